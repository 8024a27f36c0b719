// A progress bar on stderr, so stdout carries only results (and nothing but the object in
// --json mode). On a terminal it is redrawn in place; elsewhere (logs, CI, a pipe) one line per
// finished step, plus a line at most every HEARTBEAT_MS for a step still running, so a long
// load or packing never looks hung.
const WIDTH = 24;
// Often enough that a multi-second load shows signs of life, rarely enough to keep logs short.
const HEARTBEAT_MS = 5000;

export class Progress {
  #done = 0;
  readonly #total: number;
  readonly #stream = process.stderr;
  readonly #tty = Boolean(process.stderr.isTTY);
  #lastLength = 0;
  #lastLine = performance.now();

  constructor(total: number) {
    this.#total = total;
  }

  /** Shows what is running now: redrawn on a terminal, a line every HEARTBEAT_MS elsewhere. */
  update(label: string): void {
    if (this.#tty) this.#draw(label);
    else if (performance.now() - this.#lastLine >= HEARTBEAT_MS) this.#line(label);
  }

  /** Marks one step finished, with what it found. */
  step(label: string): void {
    this.#done = Math.min(this.#total, this.#done + 1);
    if (this.#tty) this.#draw(label);
    else this.#line(label);
  }

  /** A line of its own above the bar (what is about to happen, what it needs). */
  note(line: string): void {
    this.#clear();
    this.#stream.write(`${line}\n`);
    this.#lastLine = performance.now();
  }

  /** Clears the bar (a terminal) so what follows prints on clean lines. */
  end(): void {
    this.#clear();
  }

  /** Calls update(label()) every `ms` until the promise settles: progress while the event loop waits on a load. */
  async during<T>(work: Promise<T>, label: () => string, ms = 250): Promise<T> {
    const timer = setInterval(() => this.update(label()), ms);
    try {
      return await work;
    } finally {
      clearInterval(timer);
    }
  }

  #clear(): void {
    if (this.#tty && this.#lastLength > 0) this.#stream.write(`\r${' '.repeat(this.#lastLength)}\r`);
    this.#lastLength = 0;
  }

  #line(label: string): void {
    this.#stream.write(`${this.#bar(label)}\n`);
    this.#lastLine = performance.now();
  }

  #bar(label: string): string {
    const filled = Math.round((WIDTH * this.#done) / this.#total);
    const percent = String(Math.round((100 * this.#done) / this.#total)).padStart(3);
    return `[${'#'.repeat(filled)}${'-'.repeat(WIDTH - filled)}] ${percent}%  ${label}`;
  }

  #draw(label: string): void {
    const line = this.#bar(label);
    this.#stream.write(`\r${line}${' '.repeat(Math.max(0, this.#lastLength - line.length))}`);
    this.#lastLength = line.length;
  }
}
