// AudioWorklet: downmix to mono, low-pass + linearly resample from the context rate to 16 kHz,
// post fixed frames (default 960 samples = 60 ms) as Float32Array + Int16Array to the main thread.
class Biquad {  // RBJ low-pass
  constructor(fs, fc, q = 0.7071) {
    const w = 2 * Math.PI * fc / fs, a = Math.sin(w) / (2 * q), c = Math.cos(w), a0 = 1 + a;
    this.b0 = (1 - c) / 2 / a0; this.b1 = (1 - c) / a0; this.b2 = this.b0;
    this.a1 = -2 * c / a0; this.a2 = (1 - a) / a0; this.x1 = this.x2 = this.y1 = this.y2 = 0;
  }
  run(buf) {
    for (let i = 0; i < buf.length; i++) {
      const x = buf[i], y = this.b0 * x + this.b1 * this.x1 + this.b2 * this.x2 - this.a1 * this.y1 - this.a2 * this.y2;
      this.x2 = this.x1; this.x1 = x; this.y2 = this.y1; this.y1 = y; buf[i] = y;
    }
  }
}

class Capture16k extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.target = o.targetRate || 16000;
    this.frame = o.frameSamples || 960;
    this.step = sampleRate / this.target;  // input samples per output sample
    this.filters = this.step > 1 ? [new Biquad(sampleRate, this.target * 0.45), new Biquad(sampleRate, this.target * 0.45)] : [];
    this.pos = 0; this.prev = 0;
    this.out = new Float32Array(this.frame); this.n = 0;
    this.running = true;
    this.port.onmessage = (e) => { if (e.data === "stop") this.running = false; };
  }
  push(s) {
    this.out[this.n++] = s;
    if (this.n === this.frame) {
      const f = this.out, i16 = new Int16Array(f.length);
      for (let i = 0; i < f.length; i++) i16[i] = Math.max(-32768, Math.min(32767, Math.round(f[i] * 32767)));
      this.port.postMessage({ f32: f, i16 }, [f.buffer, i16.buffer]);
      this.out = new Float32Array(this.frame); this.n = 0;
    }
  }
  process(inputs) {
    const input = inputs[0];
    if (!this.running) return false;
    if (!input || input.length === 0) return true;
    const len = input[0].length, mono = new Float32Array(len);
    for (const ch of input) for (let i = 0; i < len; i++) mono[i] += ch[i] / input.length;
    for (const f of this.filters) f.run(mono);
    if (this.step === 1) { for (let i = 0; i < len; i++) this.push(mono[i]); return true; }
    // pos is in input coordinates of this block; index -1 is the previous block's last sample
    while (this.pos <= len - 1) {
      const i = Math.floor(this.pos), fr = this.pos - i;
      const s0 = i < 0 ? this.prev : mono[i], s1 = fr === 0 ? s0 : mono[i + 1];
      this.push(s0 + (s1 - s0) * fr);
      this.pos += this.step;
    }
    this.pos -= len; this.prev = mono[len - 1];
    return true;
  }
}
registerProcessor("capture-16k", Capture16k);
