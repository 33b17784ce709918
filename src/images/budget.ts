// One budget is made at start (MAX_IMAGE_PIXELS) and shared by every decode of the process:
// runs' image checks and GET /data/:user_id/image alike.

/** Room for a decode did not come within its deadline: other decodes held the budget. */
export class PixelBudgetTimeout extends Error {
  override name = 'PixelBudgetTimeout';
  constructor(readonly timeoutMs: number) {
    super(`waited longer than ${timeoutMs} ms for room in the pixel budget`);
  }
}

/**
 * Declared pixels of the decodes in flight, together. Shrinking while decoding keeps memory
 * low for most formats, but HEIF/AVIF decodes whole frames: a 1 KB AVIF can declare 50
 * megapixels. Admitting decodes only while the sum stays under the limit bounds memory
 * whatever the format. A decode larger than the limit on its own runs alone.
 */
export class PixelBudget {
  private inUse = 0;
  private readonly waiting: Array<{ pixels: number; admit: () => void }> = [];
  constructor(readonly limit: number) {}

  /**
   * Waits for room for this many pixels; call the returned function when the decode has ended.
   * Past timeoutMs it gives up with a PixelBudgetTimeout and leaves the queue, so decodes that
   * never end cannot hold up a run (or a photo request) forever.
   */
  acquire(pixels: number, timeoutMs = Infinity): Promise<() => void> {
    return new Promise((resolve, reject) => {
      const deadline: { timer?: NodeJS.Timeout } = {};
      const waiter = {
        pixels,
        admit: () => {
          clearTimeout(deadline.timer);
          resolve(() => this.release(pixels));
        },
      };
      this.waiting.push(waiter);
      this.drain();
      if (!this.waiting.includes(waiter) || !Number.isFinite(timeoutMs)) return;
      deadline.timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(waiter), 1);
        // Smaller decodes queued behind this one may fit now.
        this.drain();
        reject(new PixelBudgetTimeout(timeoutMs));
      }, timeoutMs);
    });
  }

  get pixelsInUse(): number {
    return this.inUse;
  }

  private release(pixels: number): void {
    this.inUse -= pixels;
    this.drain();
  }

  private drain(): void {
    // First come, first served: a large decode is not overtaken forever by small ones.
    for (let w = this.waiting[0]; w && (this.inUse === 0 || this.inUse + w.pixels <= this.limit); w = this.waiting[0]) {
      this.waiting.shift();
      this.inUse += w.pixels;
      w.admit();
    }
  }
}
