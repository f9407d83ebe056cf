"""The server's own tools: the time, a calculator, and a timer that speaks when it is due.

Each answers in the turn's language with the node's phrase table, so what the device hears is the
same sentence a rule would have said (the time tool asks the time rule itself).
"""

from __future__ import annotations

import ast
import operator
from decimal import ROUND_HALF_UP, Decimal, DivisionByZero, InvalidOperation
from typing import Any

from edge_node.language.phrases import say
from edge_node.routing.arithmetic import format_number
from edge_node.routing.intent import DeviceCapabilities, IntentMatcher
from edge_node.tools.base import ToolContext, ToolError

__all__ = ["Calculator", "GetTime", "SetTimer", "builtin_tools"]


class GetTime:
    name = "get_time"
    description = "The current local time. Use it when the user asks what time it is."
    parameters: dict[str, Any] = {"type": "object", "properties": {}}

    def __init__(self, matcher: IntentMatcher) -> None:
        self._matcher = matcher

    async def call(self, arguments: dict[str, Any], ctx: ToolContext) -> str:
        question = "现在几点" if ctx.language == "zh" else "what time is it"
        match = self._matcher.match(question, DeviceCapabilities(), ctx.language)
        if match is None:  # the time rule always answers these; a changed rule must not go silent
            raise ToolError("the time rule did not answer")
        return match.say


_OPS: dict[type[ast.AST], Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def evaluate(expression: str) -> Decimal:
    """An arithmetic expression of numbers, + - * / % ** and parentheses, in exact decimals. Anything
    else (names, calls, attributes) is refused, so a model's argument can never run code."""
    if len(expression) > 200:
        raise ToolError("expression too long")
    try:
        tree = ast.parse(expression.replace("^", "**").replace("×", "*").replace("÷", "/"), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from exc

    def walk(node: ast.AST) -> Decimal:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return Decimal(str(node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 10**6):
                raise ToolError("power too large")
            try:
                return _OPS[type(node.op)](left, right)
            except (DivisionByZero, InvalidOperation, ZeroDivisionError) as exc:
                raise ToolError(f"cannot compute {expression!r}") from exc
        raise ToolError(f"not an arithmetic expression: {expression!r}")

    return walk(tree)


class Calculator:
    name = "calculator"
    description = (
        "Compute an arithmetic expression exactly, e.g. '15 * 240 / 100' for 15 percent of 240. "
        "Use it for any calculation."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "numbers with + - * / % ** ( )"}},
        "required": ["expression"],
    }

    async def call(self, arguments: dict[str, Any], ctx: ToolContext) -> str:
        value = evaluate(str(arguments.get("expression", "")))
        if value != value.to_integral_value():
            value = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        return say(ctx.language, "calc_result", value=format_number(value))


class SetTimer:
    name = "set_timer"
    description = "Set a timer or reminder that speaks on this device when it is due."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "seconds": {"type": "integer", "minimum": 1, "maximum": 86400, "description": "from now"},
            "message": {"type": "string", "description": "what to say when it is due (optional)"},
        },
        "required": ["seconds"],
    }

    async def call(self, arguments: dict[str, Any], ctx: ToolContext) -> str:
        try:
            seconds = int(arguments.get("seconds", 0))
        except (TypeError, ValueError) as exc:
            raise ToolError(f"seconds is not a number: {arguments.get('seconds')!r}") from exc
        if not 1 <= seconds <= 86400:
            raise ToolError(f"seconds out of range: {seconds}")
        if ctx.announce is None:
            raise ToolError("no session to speak on")
        message = str(arguments.get("message") or "").strip()[:200]
        due = say(ctx.language, "timer_due_with", message=message) if message else say(ctx.language, "timer_due")
        if not ctx.announce(due, float(seconds)):
            raise ToolError("too many timers on this device")
        return say(ctx.language, "timer_set", amount=_duration(seconds, ctx.language))


def _duration(seconds: int, language: str) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if language == "zh":
        parts = [f"{hours}小时" if hours else "", f"{minutes}分钟" if minutes else "", f"{secs}秒" if secs else ""]
        return "".join(parts)
    words = []
    for value, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second")):
        if value:
            words.append(f"{value} {unit}{'s' if value != 1 else ''}")
    return " and ".join(words)


def builtin_tools(names: list[str], matcher: IntentMatcher) -> list[Any]:
    """The built-in tools named in the config (``tools.builtin``), in that order."""
    known = {"get_time": lambda: GetTime(matcher), "calculator": Calculator, "set_timer": SetTimer}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"tools.builtin: unknown tool(s) {unknown}; known: {sorted(known)}")
    return [known[n]() for n in names]
