// Microphone -> Opus packets, and Opus packets -> speakers, with WebCodecs (no bundled codec).
//
// The firmware sends 16 kHz mono Opus in 60 ms frames and the node answers with raw Opus packets
// (no Ogg) at the rate its hello announces, so both directions map onto AudioEncoder / AudioDecoder.

export const UPLINK = {
  codec: "opus", sampleRate: 16000, numberOfChannels: 1, bitrate: 24000,
  opus: { frameDuration: 60000, application: "voip", signal: "voice", complexity: 5 },
};
const FRAME_SAMPLES = UPLINK.sampleRate * 0.06;

export class MicOpusEncoder {
  // onPacket(Uint8Array, rms) once per 60 ms Opus packet; rms is that frame's level (0..1), for the
  // page's own voice detection (barge-in).
  constructor({ onPacket, onError = console.error }) {
    this.onPacket = onPacket; this.onError = onError;
    this.samplesIn = 0; this.levels = []; this.injected = [];
  }

  async start() {
    // Echo cancellation on: the reply played through speakers must not count as the user speaking.
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: true },
    });
    // Devices (and Chromium's fake one) capture at 44.1 or 48 kHz whatever is asked: the worklet
    // resamples to 16 kHz itself.
    this.ctx = new AudioContext();
    if (this.ctx.state !== "running") await this.ctx.resume();
    await this.ctx.audioWorklet.addModule("/talk/capture-worklet.js");
    this.encoder = new AudioEncoder({
      output: (chunk) => {
        const buf = new Uint8Array(chunk.byteLength); chunk.copyTo(buf);
        this.onPacket(buf, this.levels.shift() ?? 0);
      },
      error: (e) => this.onError(e),
    });
    this.encoder.configure(UPLINK);
    this.src = this.ctx.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.ctx, "capture-16k", {
      numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1, channelCountMode: "explicit",
      processorOptions: { targetRate: UPLINK.sampleRate, frameSamples: FRAME_SAMPLES },
    });
    this.node.port.onmessage = ({ data }) => this._frame(data.f32);
    this.src.connect(this.node);
    return this;
  }

  _frame(f) {
    this._mixInjected(f);
    let e = 0; for (let i = 0; i < f.length; i++) e += f[i] * f[i];
    this.levels.push(Math.sqrt(e / f.length));
    const ad = new AudioData({
      format: "f32", sampleRate: UPLINK.sampleRate, numberOfChannels: 1, numberOfFrames: f.length,
      timestamp: Math.round(this.samplesIn * 1e6 / UPLINK.sampleRate), data: f,
    });
    this.samplesIn += f.length;
    if (this.encoder.state === "configured") this.encoder.encode(ad);
    ad.close();
  }

  // TEST ONLY (used through window.talkTest, which exists only on /talk?test=1): mixes 16 kHz samples
  // into the next microphone frames, at the microphone's own real-time pace, because Chromium's fake
  // microphone plays its file once and cannot be given a second utterance mid-page.
  inject(samples) { this.injected.push(Float32Array.from(samples)); }

  _mixInjected(f) {
    let i = 0;
    while (i < f.length && this.injected.length) {
      const src = this.injected[0], n = Math.min(src.length, f.length - i);
      for (let k = 0; k < n; k++) f[i + k] += src[k];
      i += n;
      if (n === src.length) this.injected.shift(); else this.injected[0] = src.subarray(n);
    }
  }

  async stop() {
    this.node?.port.postMessage("stop");
    this.src?.disconnect();
    this.stream?.getTracks().forEach((t) => t.stop());
    if (this.encoder?.state === "configured") { await this.encoder.flush().catch(() => {}); this.encoder.close(); }
    await this.ctx?.close();
  }
}

export class OpusPlayer {
  // Decodes raw Opus packets and schedules them back to back. onFrame() per decoded frame;
  // onDrained() once everything scheduled has played.
  constructor({ sampleRate, frameMs = 60, onFrame = () => {}, onDrained = () => {}, onError = console.error }) {
    this.ctx = new AudioContext();
    this.gain = this.ctx.createGain();  // the board's speaker volume (MCP set_volume)
    this.gain.connect(this.ctx.destination);
    this.frameUs = frameMs * 1000; this.onFrame = onFrame; this.onDrained = onDrained;
    this.secondsPlayed = 0; this.nextTime = 0; this.ts = 0; this.sources = new Set(); this.generation = 0;
    this.decoder = new AudioDecoder({ output: (ad) => this._play(ad), error: (e) => onError(e) });
    // Raw Opus needs no OpusHead (description) for Chromium's decoder.
    this.decoder.configure({ codec: "opus", sampleRate, numberOfChannels: 1 });
  }

  async resume() { if (this.ctx.state !== "running") await this.ctx.resume(); }

  // A new reply starts (tts/start): play what is decoded from now on.
  start() { this.muted = false; }

  push(packet) {
    if (this.decoder.state !== "configured") return;
    this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: this.ts, duration: this.frameUs, data: packet }));
    this.ts += this.frameUs;
  }

  _play(ad) {
    // The decoder outputs 48 kHz whatever it was configured with: build buffers at ad.sampleRate.
    const n = ad.numberOfFrames, pcm = new Float32Array(n);
    ad.copyTo(pcm, { planeIndex: 0, format: "f32-planar" });
    const rate = ad.sampleRate;
    ad.close();
    if (this.muted) return;  // decoded after stop(): the reply was interrupted
    this.onFrame();
    const buf = this.ctx.createBuffer(1, n, rate);
    buf.copyToChannel(pcm, 0);
    const s = this.ctx.createBufferSource(), gen = this.generation;
    s.buffer = buf; s.connect(this.gain);
    // 50 ms of lead when the queue ran dry, so the first frames do not click in late.
    const t = Math.max(this.ctx.currentTime + 0.05, this.nextTime);
    s.start(t); this.nextTime = t + buf.duration;
    this.sources.add(s);
    s.onended = () => {
      this.sources.delete(s);
      if (gen !== this.generation) return;  // stopped by stop(): not played
      this.secondsPlayed += buf.duration;
      if (this.sources.size === 0) this.onDrained();
    };
  }

  set volume(v) { this.gain.gain.value = v; }

  get playing() { return this.sources.size > 0; }

  // Silence at once (abort, barge-in): what is queued is dropped, not played.
  stop() {
    this.generation++; this.muted = true;
    for (const s of this.sources) { try { s.stop(); } catch { /* not started yet */ } }
    this.sources.clear(); this.nextTime = 0;
  }

  close() {
    this.stop();
    if (this.decoder.state !== "closed") this.decoder.close();
    this.ctx.close();
  }
}
