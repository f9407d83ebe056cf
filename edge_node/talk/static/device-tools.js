// The simulated board's MCP server (docs/protocol.md §3), answering like xiaozhi-device
// (shared/client/device_mcp.py): initialize, tools/list, tools/call. The node is the MCP client.

const TOOLS = [
  {
    name: "self.get_device_status",
    description: "Provides the real-time information of the device, including the current status of the audio "
      + "speaker, screen, battery, network, etc.",
    inputSchema: { type: "object", properties: {} },
  },
  {
    name: "self.audio_speaker.set_volume",
    description: "Set the volume of the audio speaker. If the current volume is unknown, you must call "
      + "`self.get_device_status` tool first and then call this tool.",
    inputSchema: { type: "object", properties: { volume: { type: "integer", minimum: 0, maximum: 100 } }, required: ["volume"] },
  },
  {
    name: "self.screen.set_brightness",
    description: "Set the brightness of the screen.",
    inputSchema: { type: "object", properties: { brightness: { type: "integer", minimum: 0, maximum: 100 } }, required: ["brightness"] },
  },
];

const isInt = (v, lo, hi) => Number.isInteger(v) && v >= lo && v <= hi;

export class DeviceTools {
  // onChange(state) after a call changed the board (volume, brightness).
  constructor(onChange) {
    this.state = { volume: 70, brightness: 75 };
    this.onChange = onChange;
  }

  // One JSON-RPC request from the node -> the reply payload, or null when none is due.
  handle(req) {
    if (!req || req.jsonrpc !== "2.0" || typeof req.method !== "string") return null;
    if (req.method.startsWith("notifications")) return null;
    if (typeof req.id !== "number") return null;  // the firmware drops requests with other ids
    const ok = (result) => ({ jsonrpc: "2.0", id: req.id, result });
    const fail = (code, message) => ({ jsonrpc: "2.0", id: req.id, error: { code, message } });
    const params = req.params || {};
    switch (req.method) {
      case "initialize":
        return ok({ protocolVersion: "2024-11-05", capabilities: { tools: {} },
                    serverInfo: { name: "xiaozhi-talk-page", version: "1.0.0" } });
      case "tools/list":
        return ok({ tools: TOOLS, nextCursor: "" });
      case "tools/call": {
        const args = params.arguments || {};
        const text = this.call(params.name, args);
        return text === null ? fail(-32602, `Invalid arguments for ${params.name}`)
          : ok({ content: [{ type: "text", text }], isError: false });
      }
      default:
        return fail(-32601, `Method not implemented: ${req.method}`);
    }
  }

  call(name, args) {
    const s = this.state;
    if (name === "self.get_device_status") {
      return JSON.stringify({ audio_speaker: { volume: s.volume }, screen: { brightness: s.brightness },
                              network: { type: "browser" } });
    }
    if (name === "self.audio_speaker.set_volume" && isInt(args.volume, 0, 100)) s.volume = args.volume;
    else if (name === "self.screen.set_brightness" && isInt(args.brightness, 0, 100)) s.brightness = args.brightness;
    else return null;
    this.onChange(s, name);
    return "true";
  }
}
