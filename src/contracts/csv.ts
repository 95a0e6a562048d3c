// RFC 4180 CSV, as partners' settlement files use it: quoted fields with embedded commas, quotes ("")
// and line breaks, CRLF or LF records, an optional UTF-8 BOM. Errors name the file, line and column.

/** A file that is not the CSV it claims to be; `line` and `column` are 1-based (column: field number). */
export class CsvError extends Error {
  override name = 'CsvError';
  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly column: number | string | undefined,
    readonly reason: string,
  ) {
    super(
      `${file}${line === undefined ? '' : `, line ${line}`}${column === undefined ? '' : `, column ${column}`}: ${reason}`,
    );
  }
}

export interface CsvRecord {
  /** Physical line (1-based) where the record starts: a quoted line break makes a record span lines. */
  line: number;
  fields: string[];
}

export interface CsvReadOptions {
  /** Longest field accepted, in characters (a runaway quote would otherwise swallow the file). */
  maxFieldChars?: number;
}

const DEFAULT_MAX_FIELD_CHARS = 64 * 1024;

/**
 * Decodes UTF-8 strictly (a byte that is not UTF-8 is an error naming its line, never U+FFFD) and drops a BOM.
 * A line feed byte never occurs inside a multi-byte sequence, so the first bad line is found line by line.
 */
export function decodeUtf8(file: string, bytes: Uint8Array): string {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  try {
    return decoder.decode(bytes);
  } catch {
    let start = 0;
    for (let line = 1; ; line++) {
      const end = bytes.indexOf(0x0a, start);
      const slice = bytes.subarray(start, end === -1 ? bytes.length : end);
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(slice);
      } catch {
        throw new CsvError(file, line, undefined, 'not valid UTF-8');
      }
      if (end === -1) throw new CsvError(file, undefined, undefined, 'not valid UTF-8');
      start = end + 1;
    }
  }
}

/** Splits CSV text into records; a blank last line is not a record. */
export function readCsv(file: string, text: string, options: CsvReadOptions = {}): CsvRecord[] {
  const maxField = options.maxFieldChars ?? DEFAULT_MAX_FIELD_CHARS;
  const src = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const records: CsvRecord[] = [];
  let line = 1;
  let recordLine = 1;
  let fields: string[] = [];
  let field = '';
  let i = 0;
  const n = src.length;
  const push = (): void => {
    if (field.length > maxField) {
      throw new CsvError(file, recordLine, fields.length + 1, `field longer than ${maxField} characters`);
    }
    fields.push(field);
    field = '';
  };
  const endRecord = (): void => {
    push();
    records.push({ line: recordLine, fields });
    fields = [];
  };
  while (i < n) {
    const c = src[i]!;
    if (c === '"' && field === '') {
      // A quoted field: runs to the closing quote; "" is a literal quote.
      const openedLine = line;
      i++;
      let chunkStart = i;
      for (;;) {
        const q = src.indexOf('"', i);
        if (q === -1) {
          throw new CsvError(file, openedLine, fields.length + 1, 'quoted field never closed');
        }
        field += src.slice(chunkStart, q);
        for (let k = chunkStart; k < q; k++) if (src.charCodeAt(k) === 10) line++;
        if (field.length > maxField) {
          throw new CsvError(file, recordLine, fields.length + 1, `field longer than ${maxField} characters`);
        }
        if (src[q + 1] === '"') {
          field += '"';
          i = q + 2;
          chunkStart = i;
          continue;
        }
        i = q + 1;
        break;
      }
      const next = src[i];
      if (next !== undefined && next !== ',' && next !== '\n' && next !== '\r') {
        throw new CsvError(file, line, fields.length + 1, 'text after a closing quote');
      }
      continue;
    }
    if (c === ',') {
      push();
      i++;
    } else if (c === '\r' || c === '\n') {
      endRecord();
      i += c === '\r' && src[i + 1] === '\n' ? 2 : 1;
      line++;
      recordLine = line;
      if (i >= n) return records;
    } else if (c === '"') {
      throw new CsvError(file, line, fields.length + 1, 'quote inside an unquoted field');
    } else {
      // Copy the run of plain characters at once: a huge field stays linear.
      let j = i + 1;
      while (j < n) {
        const d = src.charCodeAt(j);
        if (d === 44 || d === 10 || d === 13 || d === 34) break;
        j++;
      }
      field += src.slice(i, j);
      if (field.length > maxField) {
        throw new CsvError(file, recordLine, fields.length + 1, `field longer than ${maxField} characters`);
      }
      i = j;
    }
  }
  if (src.length > 0) endRecord();
  return records;
}

/** One field, quoted when it holds a comma, quote, line break or surrounding space. */
export function csvField(value: string): string {
  return /[",\r\n]|^\s|\s$/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** Records as CSV text, CRLF line ends (RFC 4180), a final line break. */
export function writeCsv(rows: readonly (readonly string[])[]): string {
  return rows.map((r) => r.map(csvField).join(',')).join('\r\n') + '\r\n';
}
