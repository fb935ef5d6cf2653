/**
 * The safetensors container (https://github.com/huggingface/safetensors, "Format"): an 8-byte
 * little-endian header length N, N bytes of JSON mapping tensor names to {dtype, shape, data_offsets}
 * (plus an optional "__metadata__" string map), then the raw little-endian tensor bytes. npm has no
 * maintained writer for Node, and the format is small enough to implement and validate here in full.
 * Only F32 is used by this project.
 */
import { z } from 'zod';

export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

export class SafetensorsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SafetensorsError';
  }
}

const offset = z.number().int().min(0);
const HeaderEntrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().min(0)),
  data_offsets: z.tuple([offset, offset]),
});
/** The header as the format defines it: a JSON object of tensor entries and an optional string map. */
const HeaderSchema = z
  .object({ __metadata__: z.record(z.string(), z.string()).optional() })
  .catchall(HeaderEntrySchema);
type HeaderEntry = z.infer<typeof HeaderEntrySchema>;

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export function encodeSafetensors(
  tensors: readonly NamedTensor[],
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const expected = t.shape.reduce((a, b) => a * b, 1);
    if (expected !== t.data.length) {
      throw new SafetensorsError(`tensor ${t.name} has ${t.data.length} values but shape [${t.shape}]`);
    }
    if (t.name in header) throw new SafetensorsError(`duplicate tensor name ${t.name}`);
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  // The spec allows trailing spaces; padding to 8 bytes keeps the tensor data aligned.
  const jsonBytesLength = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - ((8 + jsonBytesLength) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + headerBytes.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const t of tensors) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    if (isLittleEndian()) out.set(bytes, pos);
    else writeFloat32LE(out, pos, t.data);
    pos += t.data.byteLength;
  }
  return out;
}

export interface DecodedSafetensors {
  tensors: Map<string, NamedTensor>;
  metadata: Record<string, string>;
}

/** Parses and validates a safetensors buffer; `what` names it in error messages (e.g. a file path). */
export function decodeSafetensors(bytes: Uint8Array, what: string): DecodedSafetensors {
  const fail = (problem: string): never => {
    throw new SafetensorsError(`${what}: ${problem}`);
  };
  if (bytes.length < 8) fail(`truncated: ${bytes.length} bytes, no header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > bytes.length) {
    fail(`header length ${headerLength} does not fit in ${bytes.length} bytes`);
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + 8, headerLength).toString('utf8'));
  } catch {
    return fail('header is not valid JSON');
  }
  const parsed = HeaderSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.length ? `header field ${issue.path.join('.')}` : 'header';
    return fail(`${field}: ${issue?.message ?? 'is malformed'}`);
  }
  const { __metadata__: metadata = {}, ...tensorEntries } = parsed.data;
  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;
  const entries = Object.entries(tensorEntries) as [string, HeaderEntry][];
  entries.sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  const tensors = new Map<string, NamedTensor>();
  let expectedOffset = 0;
  for (const [name, e] of entries) {
    if (e.dtype !== 'F32') fail(`tensor ${name} has dtype ${e.dtype}; only F32 is supported`);
    const [begin, end] = e.data_offsets;
    if (begin !== expectedOffset)
      fail(`tensor ${name} starts at byte ${begin}, expected ${expectedOffset} (hole or overlap)`);
    const count = e.shape.reduce((a, b) => a * b, 1);
    if (end - begin !== count * 4)
      fail(`tensor ${name} spans ${end - begin} bytes but shape [${e.shape}] needs ${count * 4}`);
    if (end > dataLength)
      fail(`tensor ${name} ends at byte ${end} beyond the ${dataLength} data bytes (truncated file?)`);
    // A copy, not Buffer#slice (a view into a shared pool whose .buffer is not this tensor's bytes).
    const raw = new Uint8Array(end - begin);
    raw.set(bytes.subarray(dataStart + begin, dataStart + end));
    const data = isLittleEndian() ? new Float32Array(raw.buffer) : readFloat32LE(raw, count);
    tensors.set(name, { name, shape: e.shape, data });
    expectedOffset = end;
  }
  if (expectedOffset !== dataLength)
    fail(`${dataLength - expectedOffset} unexpected trailing bytes after the tensors`);
  return { tensors, metadata };
}

function isLittleEndian(): boolean {
  return new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
}

function readFloat32LE(raw: Uint8Array, count: number): Float32Array {
  const view = new DataView(raw.buffer);
  return Float32Array.from({ length: count }, (_, i) => view.getFloat32(i * 4, true));
}

function writeFloat32LE(out: Uint8Array, pos: number, data: Float32Array): void {
  const view = new DataView(out.buffer, out.byteOffset);
  for (let i = 0; i < data.length; i++) view.setFloat32(pos + i * 4, data[i], true);
}
