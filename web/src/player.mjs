// The page's playout: each decided frame's speech on the audio clock, its picture drawn when that speech is heard.
//
// The Decoder decides frames in real time (its jitter buffer); every frame job's 40 ms of speech is scheduled
// at once on the AudioContext at the frame's slot (base + index * 40 ms), whatever happens to its picture, so
// the speech plays on, continuous, while pictures are skipped. A frame decided after its slot (the decoder's
// playout delay grew, or the page stalled) moves the clock later with 0.1 s more head room: a short silence
// is inserted, no speech is dropped (`audioResyncs`, `insertedS`). Pictures are drawn by one render loop: a frame
// is rendered (onnxruntime-web) only if no newer frame is waiting (behind real time: skip to the newest, as
// the Python receiver's realtime mode does), and put on the canvas when its speech is heard
// (AudioContext.getOutputTimestamp), or at once when it is late by less than `MAX_LATE_S`, else dropped.

import { logMelWindow } from "./mel.mjs";
import { fiveChannel } from "./priors.mjs";
import { toRgba } from "./render.mjs";
import { decodeSourceImage } from "./source_image.mjs";

export const FRAME_S = 0.04; // 25 fps
const LEAD_S = 0.2; // first frame's speech starts this long after it was decided (scheduling head room)
const MAX_LEAD_S = 0.6; // each re-sync (a frame decided after its slot) adds 0.1 s of head room, up to this
const MAX_LATE_S = 0.08; // a picture later than this behind its speech is dropped (2 frames; lips visibly off beyond)
const SAMPLE_RATE = 16000;

/** Draws and plays one call. */
export class Player {
  /**
   * @param {{canvas: HTMLCanvasElement, audio: AudioContext, graphs: object, priors: object,
   *   onSourceFailed: function(number): void, onSourceApplied?: function(number): void, capture?: boolean}} parts
   *   graphs: render.mjs ReceiverGraphs;
   *   priors: priors.mjs PriorExtractor; capture: keep a copy of every drawn picture by frame index (tests)
   */
  constructor({ canvas, audio, graphs, priors, onSourceFailed, onSourceApplied = () => {}, capture = false }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.audio = audio;
    this.graphs = graphs;
    this.priors = priors;
    this.onSourceFailed = onSourceFailed;
    this.onSourceApplied = onSourceApplied;
    this.capture = capture ? new Map() : null;
    this.analyser = audio.createAnalyser();
    this.analyser.fftSize = 2048;
    this.analyser.connect(audio.destination);
    this._queue = []; // jobs for the render loop, in order
    this._wake = null;
    this._base = null; // AudioContext time of frame 0's speech
    this._lead = LEAD_S;
    this._image = new ImageData(256, 256);
    this._closed = false;
    this.stats = {
      framesDecided: 0, framesDrawn: 0, framesSkipped: 0, framesLate: 0, audioScheduledS: 0, audioResyncs: 0,
      audioPeak: 0, resyncLateMs: 0, insertedS: 0, sources: 0, sourceMs: 0, renderMs: 0, lastDrawnIndex: -1, syncMaxMs: 0,
      syncSumMs: 0,
    };
    this._drawTimes = []; // performance.now() of recent draws (fps)
    this._loop = this._run();
  }

  /** Speech heard now, on the AudioContext clock (s). */
  heardTime() {
    const ts = this.audio.getOutputTimestamp?.();
    return ts && ts.contextTime > 0 ? ts.contextTime : this.audio.currentTime - (this.audio.outputLatency || 0);
  }

  /** Frames drawn in the last second. */
  get fps() {
    const t = performance.now();
    this._drawTimes = this._drawTimes.filter((d) => t - d < 1000);
    return this._drawTimes.length;
  }

  /**
   * Take the Decoder's jobs: speech scheduled now, pictures queued for the render loop.
   * @param {object[]} jobs Decoder.takeJobs() output, in order
   */
  push(jobs) {
    for (const job of jobs) {
      if (job.type === "frame") {
        this.stats.framesDecided += 1;
        job.slotS = this._schedule(job);
      }
      this._queue.push(job);
    }
    if (jobs.length && this._wake) this._wake();
  }

  /** Schedule a frame's 640 samples at its slot; returns the slot (AudioContext s). */
  _schedule(job) {
    const t = this.audio.currentTime;
    if (this._base === null || this._base + job.index * FRAME_S < t + 0.01) {
      if (this._base !== null) { // decided too late for its slot (a stalled page): restart the clock, later
        this.stats.audioResyncs += 1;
        this.stats.resyncLateMs = Math.max(this.stats.resyncLateMs, 1000 * (t - this._base - job.index * FRAME_S));
        this._lead = Math.min(MAX_LEAD_S, this._lead + 0.1);
      }
      const base = t + this._lead - job.index * FRAME_S;
      if (this._base !== null) this.stats.insertedS += base - this._base; // silence between the old and new clock
      this._base = base;
    }
    const slot = this._base + job.index * FRAME_S;
    const buffer = this.audio.createBuffer(1, job.pcm.length, SAMPLE_RATE);
    buffer.copyToChannel(job.pcm, 0);
    let peak = 0;
    for (const v of job.pcm) peak = Math.max(peak, Math.abs(v));
    this.stats.audioPeak = Math.max(this.stats.audioPeak, peak);
    const node = this.audio.createBufferSource();
    node.buffer = buffer;
    node.connect(this.analyser);
    node.start(slot);
    this.stats.audioScheduledS += job.pcm.length / SAMPLE_RATE;
    return slot;
  }

  async _next() {
    while (!this._queue.length) {
      if (this._closed) return null;
      await new Promise((resolve) => { this._wake = resolve; });
      this._wake = null;
    }
    return this._queue.shift();
  }

  async _run() {
    for (;;) {
      const job = await this._next();
      if (job === null) return;
      try {
        if (job.type === "source") await this._setSource(job);
        else if (this._queue.some((j) => j.type === "frame")) this.stats.framesSkipped += 1; // newer waiting
        else await this._draw(job);
      } catch (exc) {
        console.error("avfr player:", exc);
        if (job.type === "source") this.onSourceFailed(job.imageId);
      }
    }
  }

  async _setSource(job) {
    const t0 = performance.now();
    const rgba = await decodeSourceImage(job.data, job.format, this.priors.cv);
    const canvas = new OffscreenCanvas(256, 256);
    canvas.getContext("2d").putImageData(new ImageData(rgba, 256, 256), 0, 0);
    const p = await this.priors.extract(canvas.transferToImageBitmap());
    await this.graphs.setSource(fiveChannel(rgba, p.mesh, p.mask));
    this.stats.sources += 1;
    this.stats.sourceMs = performance.now() - t0;
    this.onSourceApplied(job.imageId);
    if (this.stats.lastDrawnIndex < 0) this.ctx.putImageData(new ImageData(rgba, 256, 256), 0, 0);
  }

  async _draw(job) {
    if (!this.graphs.hasSource) { this.stats.framesSkipped += 1; return; } // no picture yet: speech only
    const t0 = performance.now();
    const source = this.graphs.sourceKeypoints;
    const chw = await this.graphs.frame(job.kp ?? source.kp, job.jac ?? source.jac, logMelWindow(job.window),
      job.heldFrames);
    this.stats.renderMs = performance.now() - t0;
    const wait = job.slotS - this.heardTime();
    if (wait < -MAX_LATE_S) { this.stats.framesLate += 1; return; }
    toRgba(chw, this._image.data);
    if (wait > 0.002) await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    this.ctx.putImageData(this._image, 0, 0);
    const offsetMs = 1000 * (this.heardTime() - job.slotS); // > 0: the picture came after its speech was heard
    this.stats.syncMaxMs = Math.max(this.stats.syncMaxMs, Math.abs(offsetMs));
    this.stats.syncSumMs += offsetMs;
    this.stats.framesDrawn += 1;
    this.stats.lastDrawnIndex = job.index;
    this._drawTimes.push(performance.now());
    if (this.capture) this.capture.set(job.index, new Uint8Array(this._image.data));
  }

  /** Level of what is playing now (RMS of the analyser's window, 0..1). */
  level() {
    this._levelBuf ??= new Float32Array(this.analyser.fftSize); // read 20 times a second: allocated once
    const buf = this._levelBuf;
    this.analyser.getFloatTimeDomainData(buf);
    let s = 0;
    for (const v of buf) s += v * v;
    return Math.sqrt(s / buf.length);
  }

  /** Stop after the queued jobs (resolves when the render loop ended). */
  async close() {
    this._closed = true;
    if (this._wake) this._wake();
    await this._loop;
  }
}
