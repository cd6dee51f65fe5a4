/**
 * The shape of an upload form, checked as its multipart body streams in:
 * exactly one file part, whose bytes are handed out as they arrive and
 * counted against a limit, and a few small text fields kept in memory.
 * Pure: the caller decides where the file's bytes go.
 *
 * @module
 */

import {
  MultipartError,
  type MultipartLimits,
  MultipartParser,
  type PartHeaders,
} from "./multipart.ts";

/** Options of {@linkcode FileForm}. */
export interface FileFormOptions extends MultipartLimits {
  /** Largest file, bytes; one more is refused with `file_too_large`. */
  readonly maxFileBytes: number;
  /** Largest text field, bytes; one more is refused with `field_too_large`. @default {1024} */
  readonly maxFieldBytes?: number;
  /** Name of the file part. @default {"file"} */
  readonly fileField?: string;
}

/** A {@linkcode FileForm} once its body is complete. */
export interface FileFormResult {
  /** The text fields, each the first value of its name. */
  readonly fields: Readonly<Record<string, string>>;
  /** The file's size. */
  readonly fileBytes: number;
}

type Current =
  | { readonly kind: "file" | "skip" }
  | { readonly kind: "field"; readonly name: string; readonly decoder: TextDecoder; text: string };

/**
 * An upload form over a {@linkcode MultipartParser}. `push` each chunk of
 * the body and write out the file bytes it returns, then `finish`. Throws
 * {@linkcode MultipartError}: `no_file`, `duplicate_file` or `file_is_text`
 * unless there is exactly one file part named `fileField`,
 * `file_too_large` and `field_too_large` past the limits, and the parser's
 * own. Files under other names are skipped, never held.
 */
export class FileForm {
  #parser: MultipartParser;
  #fileField: string;
  #maxFileBytes: number;
  #maxFieldBytes: number;
  #current: Current = { kind: "skip" };
  #fieldBytes = 0;
  #fields: Record<string, string> = Object.create(null);
  #fileSeen = false;
  #fileBytes = 0;

  /** A form whose body is delimited by `boundary`. */
  constructor(boundary: string, options: FileFormOptions) {
    this.#parser = new MultipartParser(boundary, options);
    this.#fileField = options.fileField ?? "file";
    this.#maxFileBytes = options.maxFileBytes;
    this.#maxFieldBytes = options.maxFieldBytes ?? 1024;
  }

  /**
   * Parse the next chunk; returns the file's bytes it held, in order. They
   * are views of `chunk` (or of a copy): write them out before changing it.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    const file: Uint8Array[] = [];
    for (const event of this.#parser.push(chunk)) {
      if (event.kind === "headers") this.#begin(event.part);
      else if (event.kind === "end") this.#end();
      else if (this.#current.kind === "file") {
        this.#fileBytes += event.bytes.length;
        if (this.#fileBytes > this.#maxFileBytes) {
          throw new MultipartError("file_too_large", `File exceeds ${this.#maxFileBytes} bytes`);
        }
        file.push(event.bytes);
      } else if (this.#current.kind === "field") {
        this.#fieldBytes += event.bytes.length;
        if (this.#fieldBytes > this.#maxFieldBytes) {
          throw new MultipartError(
            "field_too_large",
            `Field "${this.#current.name.slice(0, 40)}" exceeds ${this.#maxFieldBytes} bytes`,
          );
        }
        this.#current.text += this.#current.decoder.decode(event.bytes, { stream: true });
      }
    }
    return file;
  }

  /** The body has ended: its fields and the file's size. */
  finish(): FileFormResult {
    this.#parser.finish();
    if (!this.#fileSeen) {
      throw new MultipartError("no_file", `Missing file field "${this.#fileField}"`);
    }
    const fields: Record<string, string> = Object.assign(Object.create(null), this.#fields);
    return { fields, fileBytes: this.#fileBytes };
  }

  #begin(part: PartHeaders): void {
    if (part.name !== this.#fileField) {
      this.#current = part.filename === undefined
        ? { kind: "field", name: part.name, decoder: new TextDecoder(), text: "" }
        : { kind: "skip" };
      this.#fieldBytes = 0;
      return;
    }
    if (part.filename === undefined) {
      throw new MultipartError("file_is_text", `Field "${this.#fileField}" must be a file`);
    }
    if (this.#fileSeen) {
      throw new MultipartError("duplicate_file", `More than one file field "${this.#fileField}"`);
    }
    this.#fileSeen = true;
    this.#current = { kind: "file" };
  }

  #end(): void {
    const current = this.#current;
    if (current.kind === "field" && !(current.name in this.#fields)) {
      this.#fields[current.name] = current.text + current.decoder.decode();
    }
    this.#current = { kind: "skip" };
  }
}
