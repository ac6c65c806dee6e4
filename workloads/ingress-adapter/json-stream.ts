// Cuts a byte stream of concatenated JSON objects (a watch response) into one text per object, whatever the chunking.
// The API server ends each event with a newline, but its client does not rely on that, and neither does this:
// it counts braces outside strings. A structural byte is ASCII and every byte of a multi-byte UTF-8 character is
// >= 0x80, so scanning bytes is safe even when a chunk ends in the middle of a character.

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0d]);

export class JsonObjectSplitter {
  #buffer: Buffer = Buffer.alloc(0);
  /** Where the next scan starts, inside #buffer. */
  #scanned = 0;
  #depth = 0;
  #inString = false;
  #escaped = false;

  /** Takes the next chunk; returns the texts of the objects it completed, in order. Throws on bytes between objects that are not whitespace. */
  push(chunk: Buffer): string[] {
    this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
    const complete: string[] = [];
    let start = 0;
    for (let i = this.#scanned; i < this.#buffer.length; i++) {
      const byte = this.#buffer[i];
      if (this.#depth === 0) {
        if (WHITESPACE.has(byte)) {
          start = i + 1;
          continue;
        }
        if (byte !== OPEN_BRACE) throw new Error(`expected a JSON object, found ${JSON.stringify(String.fromCharCode(byte))}`);
        start = i;
      }
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false;
        else if (byte === BACKSLASH) this.#escaped = true;
        else if (byte === QUOTE) this.#inString = false;
      } else if (byte === QUOTE) this.#inString = true;
      else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) this.#depth++;
      else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
        this.#depth--;
        if (this.#depth === 0) {
          complete.push(this.#buffer.toString("utf8", start, i + 1));
          start = i + 1;
        }
      }
    }
    // Keep only the unfinished object (or nothing) for the next chunk.
    this.#buffer = this.#buffer.subarray(this.#depth === 0 ? this.#buffer.length : start);
    this.#scanned = this.#buffer.length;
    return complete;
  }

  /** True when the stream stopped in the middle of an object. */
  get midObject(): boolean {
    return this.#depth > 0;
  }
}
