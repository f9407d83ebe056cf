// /talk: one browser tab as one Xiaozhi device (docs/talk.md). Speaks the firmware's WebSocket
// protocol (docs/protocol.md §2): hello, listen start/stop/detect, abort, raw Opus frames (framing v1),
// and answers the node's MCP requests as a board with a speaker and a screen.
import { MicOpusEncoder, OpusPlayer, UPLINK } from "./opus-audio.js";
import { DeviceTools } from "./device-tools.js";

const $ = (id) => document.getElementById(id);
const body = document.body;
const WS_URL = body.dataset.wsUrl;
const NEEDS_TOKEN = body.dataset.needsToken === "1";
// A 60 ms frame above this level counts as voice (the page's own detector, for barge-in and for
// the end-of-speech time in hands-free mode); three in a row (180 ms) interrupt a reply.
const VOICE_RMS = 0.02;
const BARGE_IN_FRAMES = 3;
const KEEP_PACKETS = 8;  // sent again after a barge-in's listen/start: the start of what was said

const stats = { packetsSent: 0, packetsReceived: 0, framesDecoded: 0, audioSecondsPlayed: 0, turns: 0 };
let ws = null, mic = null, player = null, sessionId = "", helloDone = false;
// idle | listening | thinking | speaking (the firmware's device states, docs/protocol.md §2.3)
let phase = "idle", pressed = false;
let speechEndAt = null, firstAudioSeen = false, loudRun = 0, recent = [], turnEl = null;

const tools = new DeviceTools((s) => {
  $("volume").value = $("volume-meter").value = s.volume;
  $("brightness").value = $("brightness-meter").value = s.brightness;
  body.dataset.volume = s.volume; body.dataset.brightness = s.brightness;
  if (player) player.volume = s.volume / 100;
});

// ---- small helpers -------------------------------------------------------------------------------
function randomDeviceId() {
  const b = crypto.getRandomValues(new Uint8Array(6));
  b[0] = (b[0] | 0x02) & 0xfe;  // locally administered, unicast: never a real board's MAC
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
}
function randomUuid() {  // crypto.randomUUID needs a secure context; this does not
  const h = [...crypto.getRandomValues(new Uint8Array(16))].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
const mode = () => document.querySelector("input[name=mode]:checked").value;

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
  if (error) body.dataset.error = text; else delete body.dataset.error;
}
function setPhase(p) { phase = p; body.dataset.state = p; }
function showStats() {
  for (const [k, v] of Object.entries(stats)) body.dataset[k] = k === "audioSecondsPlayed" ? v.toFixed(2) : v;
  $("stats").textContent = `sent ${stats.packetsSent} packets · received ${stats.packetsReceived} · `
    + `decoded ${stats.framesDecoded} · played ${stats.audioSecondsPlayed.toFixed(1)} s · ${stats.turns} turns`;
}
function send(obj) {
  if (ws?.readyState !== WebSocket.OPEN) return;
  ws.send(JSON.stringify({ session_id: sessionId, ...obj }));
}
function sendPacket(p) {
  if (ws?.readyState !== WebSocket.OPEN) return;
  ws.send(p); stats.packetsSent++;
}

// ---- the transcript --------------------------------------------------------------------------------
function line(cls, text) {
  if (!turnEl) newTurn();
  const p = document.createElement("div");
  p.className = cls; p.textContent = text;
  turnEl.append(p);
  return p;
}
function newTurn() {
  turnEl = document.createElement("li");
  $("transcript").prepend(turnEl);
  firstAudioSeen = false;
}

// ---- turns -----------------------------------------------------------------------------------------
function listenStart() {
  send({ type: "listen", state: "start", mode: mode() });
  speechEndAt = null; loudRun = 0;
  setPhase("listening");
}
function interrupt(reason) {
  if (phase === "speaking" && turnEl) line("meta interrupted", "(interrupted)");
  player?.stop();
  send(reason ? { type: "abort", reason } : { type: "abort" });
}

// Per microphone packet: stream it while listening; while a reply plays in hands-free mode, watch
// for the user talking over it (barge-in: abort, listen again, resend the start of what was said).
function onMicPacket(packet, rms) {
  const voiced = rms > VOICE_RMS;
  if (phase === "speaking" && mode() === "auto") {
    recent.push(packet); if (recent.length > KEEP_PACKETS) recent.shift();
    loudRun = voiced ? loudRun + 1 : 0;
    if (loudRun >= BARGE_IN_FRAMES) {
      interrupt("wake_word_detected");
      listenStart();
      body.dataset.bargeIns = (+body.dataset.bargeIns || 0) + 1;
      for (const p of recent) sendPacket(p);
      recent = [];
      speechEndAt = performance.now();
    }
    return showStats();
  }
  recent = [];
  const streaming = mode() === "auto" ? phase === "listening" || phase === "thinking" : pressed;
  if (!streaming) return;
  sendPacket(packet);
  if (voiced && mode() === "auto") speechEndAt = performance.now();  // the last voiced frame sent
  showStats();
}

function onJson(msg) {
  switch (msg.type) {
    case "hello":
      sessionId = msg.session_id || ""; helloDone = true;
      player = new OpusPlayer({
        sampleRate: msg.audio_params?.sample_rate || 24000, frameMs: msg.audio_params?.frame_duration || 60,
        onFrame: () => { stats.framesDecoded++; showStats(); },
        onDrained: () => { stats.audioSecondsPlayed = player.secondsPlayed; showStats(); afterReply(); },
        onError: (e) => status(`Audio decoder: ${e.message}`, true),
      });
      player.volume = tools.state.volume / 100;
      player.resume();
      body.dataset.connected = "1";
      status(`Connected as ${$("device-id").value}.`);
      if (mode() === "auto") listenStart(); else setPhase("idle");
      break;
    case "stt":
      stats.turns++; newTurn();
      line("you", msg.text || "");
      if (speechEndAt === null) speechEndAt = performance.now();
      if (phase === "listening") setPhase("thinking");
      break;
    case "llm":
      if (msg.emotion) { $("emotion").value = `${msg.text || ""} ${msg.emotion}`; body.dataset.emotion = msg.emotion; }
      if (msg.emotion) line("meta", `emotion: ${msg.emotion}`);
      break;
    case "tts":
      if (msg.state === "start") {
        if (!turnEl) newTurn();
        player?.start(); setPhase("speaking"); loudRun = 0; recent = [];
      } else if (msg.state === "sentence_start" && msg.text) {
        line("reply", msg.text);
      } else if (msg.state === "stop") {
        turnEl = null;
        if (phase === "speaking" && !player?.playing) afterReply();
      }
      break;
    case "mcp": {
      const reply = tools.handle(msg.payload);
      if (reply) send({ type: "mcp", payload: reply });
      break;
    }
    default:
      break;
  }
}

// The reply has played out (and the node said tts/stop): hands-free listens again, push to talk idles.
function afterReply() {
  if (phase !== "speaking") return;
  if (turnEl !== null) return;  // tts/stop not in yet: more audio may come
  if (mode() === "auto") listenStart(); else setPhase("idle");
}

function onAudio(data) {
  stats.packetsReceived++;
  if (phase !== "speaking") return showStats();  // like the firmware: only between tts start and stop
  if (!firstAudioSeen) {
    firstAudioSeen = true;
    const ms = speechEndAt === null ? null : Math.round(performance.now() - speechEndAt);
    if (ms !== null) {
      line("meta latency", `end of speech → first audio: ${ms} ms`).dataset.ms = ms;
      body.dataset.lastLatencyMs = ms;
    }
  }
  player?.push(new Uint8Array(data));
  showStats();
}

// ---- connect / disconnect --------------------------------------------------------------------------
async function connect(ev) {
  ev.preventDefault();
  const deviceId = $("device-id").value.trim().toLowerCase();
  const token = $("token").value.trim();
  localStorage.setItem("xiaozhi-talk-device-id", deviceId);
  if (!window.isSecureContext) {
    return status("The microphone and WebCodecs work only over https:// or on localhost (docs/talk.md).", true);
  }
  if (!window.AudioEncoder || !window.AudioDecoder || !(await AudioEncoder.isConfigSupported(UPLINK)).supported) {
    return status("This browser has no WebCodecs Opus encoder (Safari): use Chromium, Edge or Firefox.", true);
  }
  $("connect").disabled = true;
  delete body.dataset.refused;
  status("Connecting…");
  try {
    mic = await new MicOpusEncoder({ onPacket: onMicPacket, onError: (e) => status(`Encoder: ${e.message}`, true) }).start();
    body.dataset.mic = "on";
  } catch (e) {
    $("connect").disabled = false;
    return status(`No microphone: ${e.message}`, true);
  }
  const q = new URLSearchParams({ "device-id": deviceId, "client-id": randomUuid(), "protocol-version": "1" });
  if (token) q.set("authorization", `Bearer ${token}`);
  helloDone = false;
  ws = new WebSocket(`${WS_URL}?${q}`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    send({ type: "hello", version: 1, features: { mcp: true }, transport: "websocket",
           audio_params: { format: "opus", sample_rate: 16000, channels: 1, frame_duration: 60 } });
    $("disconnect").disabled = false; $("controls").disabled = false;
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      try { onJson(JSON.parse(ev.data)); } catch (e) { console.error(e); }
      showStats();
    } else onAudio(ev.data);
  };
  ws.onclose = (ev) => {
    const refused = !helloDone;
    teardown();
    if (refused) {
      // A browser never sees the HTTP status of a refused handshake (401, 429, 503): say what is likely.
      status(NEEDS_TOKEN && !token
        ? "The node refused the connection: it needs a device token. Enter it above."
        : "The node refused the connection (wrong or expired token, revoked device, too many connects, or the node is full).", true);
      body.dataset.refused = "1";
    } else {
      status(`Disconnected${ev.reason ? `: ${ev.reason}` : ""} (code ${ev.code}).`);
    }
  };
}

function teardown() {
  ws = null; helloDone = false;
  mic?.stop(); mic = null; delete body.dataset.mic;
  player?.close(); player = null;
  delete body.dataset.connected;
  setPhase("disconnected");
  $("connect").disabled = false; $("disconnect").disabled = true; $("controls").disabled = true;
}

// ---- controls --------------------------------------------------------------------------------------
function pressTalk(ev) {
  ev.preventDefault();
  if (pressed || !helloDone) return;
  pressed = true; $("talk").classList.add("pressed");
  if (phase === "speaking") interrupt();  // talking over the reply stops it, like the board's button
  listenStart();
}
function releaseTalk() {
  if (!pressed) return;
  pressed = false; $("talk").classList.remove("pressed");
  send({ type: "listen", state: "stop" });
  speechEndAt = performance.now();
  setPhase("thinking");
}

function init() {
  $("device-id").value = localStorage.getItem("xiaozhi-talk-device-id") || randomDeviceId();
  $("token-row").hidden = !NEEDS_TOKEN;
  $("connect-form").addEventListener("submit", connect);
  $("disconnect").addEventListener("click", () => ws?.close(1000, "bye"));
  $("abort").addEventListener("click", () => { interrupt(); if (mode() === "auto" && phase === "speaking") listenStart(); });
  $("text-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("text").value.trim();
    if (!text || !helloDone) return;
    if (phase === "speaking") interrupt();
    send({ type: "listen", state: "detect", text });
    speechEndAt = performance.now();
    setPhase("thinking");
    $("text").value = "";
  });
  for (const r of document.querySelectorAll("input[name=mode]")) {
    r.addEventListener("change", () => {
      $("talk").hidden = mode() !== "manual";
      body.dataset.mode = mode();
      if (helloDone && mode() === "auto" && phase === "idle") listenStart();
      if (mode() === "manual" && phase === "listening") setPhase("idle");
    });
  }
  const talk = $("talk");
  talk.addEventListener("pointerdown", pressTalk);
  talk.addEventListener("pointerup", releaseTalk);
  talk.addEventListener("pointerleave", releaseTalk);
  talk.addEventListener("keydown", (ev) => { if (ev.key === " " && !ev.repeat) pressTalk(ev); });
  talk.addEventListener("keyup", (ev) => { if (ev.key === " ") releaseTalk(); });
  body.dataset.mode = mode();
  showStats();
  // TEST ONLY: /talk?test=1 exposes a hook that mixes 16 kHz samples into the microphone (see inject()).
  if (new URLSearchParams(location.search).get("test") === "1") {
    window.talkTest = { inject: (samples) => mic?.inject(samples) };
  }
  body.dataset.ready = "1";
}

init();
