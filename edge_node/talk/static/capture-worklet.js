// AudioWorklet "capture-16k": the microphone at the context's rate (44.1 or 48 kHz on real devices and
// Chromium's fake one, whatever getUserMedia is asked for) -> mono 16 kHz frames of `frameSamples`
// (960 = 60 ms, one Opus packet) posted to the page as Float32Array.
//
// Resampling here rather than with an AudioContext at 16 kHz: not every browser opens a capture
// context at 16 kHz, and this keeps the encoder's input identical everywhere.

// RBJ biquad low-pass: two in series (4th order) keep what lies above 8 kHz from folding back as
// aliasing when the signal is decimated to 16 kHz.
class Biquad {
  constructor(fs, fc, q = Math.SQRT1_2) {
    const w = 2 * Math.PI * fc / fs, a = Math.sin(w) / (2 * q), c = Math.cos(w), a0 = 1 + a;
    this.b0 = (1 - c) / 2 / a0; this.b1 = (1 - c) / a0; this.b2 = this.b0;
    this.a1 = -2 * c / a0; this.a2 = (1 - a) / a0;
    this.x1 = this.x2 = this.y1 = this.y2 = 0;
  }
  run(buf) {
    for (let i = 0; i < buf.length; i++) {
      const x = buf[i];
      const y = this.b0 * x + this.b1 * this.x1 + this.b2 * this.x2 - this.a1 * this.y1 - this.a2 * this.y2;
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
    this.step = sampleRate / this.target;  // input samples per output sample (`sampleRate`: the context's)
    const fc = this.target * 0.45;
    this.filters = this.step > 1 ? [new Biquad(sampleRate, fc), new Biquad(sampleRate, fc)] : [];
    this.pos = 0;   // where the next output sample falls, in input samples of the current block
    this.prev = 0;  // the previous block's last sample (index -1 of the current block)
    this.out = new Float32Array(this.frame); this.n = 0;
    this.running = true;
    this.port.onmessage = (e) => { if (e.data === "stop") this.running = false; };
  }

  push(s) {
    this.out[this.n++] = s;
    if (this.n === this.frame) {
      const f = this.out;
      this.port.postMessage({ f32: f }, [f.buffer]);  // transferred, not copied
      this.out = new Float32Array(this.frame); this.n = 0;
    }
  }

  process(inputs) {
    if (!this.running) return false;
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const len = input[0].length, mono = new Float32Array(len);
    for (const ch of input) for (let i = 0; i < len; i++) mono[i] += ch[i] / input.length;
    for (const f of this.filters) f.run(mono);
    if (this.step === 1) { for (let i = 0; i < len; i++) this.push(mono[i]); return true; }
    // Linear interpolation between neighbouring input samples (the low-pass did the real work).
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
