// A progress bar on plain stdout: redrawn in place on a terminal, one line per finished step
// otherwise (logs, CI), so the output stays readable either way.
const WIDTH = 24;

export class Progress {
  #done = 0;
  readonly #total: number;
  readonly #tty = Boolean(process.stdout.isTTY);
  #lastLength = 0;

  constructor(total: number) {
    this.#total = total;
  }

  /** Shows what is running now (a terminal only: elsewhere only finished steps print). */
  update(label: string): void {
    if (this.#tty) this.#draw(label);
  }

  /** Marks one step finished, with what it found. */
  step(label: string): void {
    this.#done = Math.min(this.#total, this.#done + 1);
    if (this.#tty) this.#draw(label);
    else console.log(this.#bar(label));
  }

  /** Clears the bar (a terminal) so the table prints on clean lines. */
  end(): void {
    if (this.#tty && this.#lastLength > 0) process.stdout.write(`\r${' '.repeat(this.#lastLength)}\r`);
    this.#lastLength = 0;
  }

  #bar(label: string): string {
    const filled = Math.round((WIDTH * this.#done) / this.#total);
    const percent = String(Math.round((100 * this.#done) / this.#total)).padStart(3);
    return `[${'#'.repeat(filled)}${'-'.repeat(WIDTH - filled)}] ${percent}%  ${label}`;
  }

  #draw(label: string): void {
    const line = this.#bar(label);
    process.stdout.write(`\r${line}${' '.repeat(Math.max(0, this.#lastLength - line.length))}`);
    this.#lastLength = line.length;
  }
}
