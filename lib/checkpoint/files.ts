// Opening the files of a checkpoint folder: regular files only.
//
// Symbolic links are followed (models kept on another disk, and the Hugging Face cache, whose
// snapshot folders are links into blobs/), but what they lead to must be a regular file:
// folders, FIFOs, sockets and devices are refused (ERR_MOE_CHECKPOINT_FILE) before anything is
// read. A file is stat()ed before it is opened (so that no device is ever opened), then opened
// read-only with O_NONBLOCK (a FIFO swapped in between cannot block open()) and fstat()ed: it
// must still be the same regular file.
import { constants, type Stats } from 'node:fs';

import * as fs from './fsio';

import { CheckpointError, type CheckpointErrorCode } from './errors';
import { parseJson, utf8ErrorOffset } from './json';

const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);

/** What a stat says a path is, in words. */
export function kindOf(s: Stats): string {
  if (s.isFile()) return 'a regular file';
  if (s.isDirectory()) return 'a folder';
  if (s.isFIFO()) return 'a FIFO (named pipe)';
  if (s.isSocket()) return 'a socket';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

function notRegular(file: string, s: Stats): CheckpointError {
  return new CheckpointError({ file, code: 'ERR_MOE_CHECKPOINT_FILE' },
    `not a regular file: it is ${kindOf(s)}${s.isFile() ? '' : ' (symbolic links are followed, but must lead to a regular file)'}`);
}

/** The CheckpointError of a failed stat / open / read of `file`. */
export async function fileError(file: string, err: unknown): Promise<CheckpointError> {
  const code = (err as NodeJS.ErrnoException).code;
  let message: string;
  if (code === 'ENOENT') {
    const link = await fs.lstat(file).then((s) => s.isSymbolicLink(), () => false);
    message = link ? 'cannot open: a symbolic link to a missing file (ENOENT)' : 'cannot open: not found (ENOENT)';
  } else if (code === 'ELOOP') {
    message = 'cannot open: a loop of symbolic links (ELOOP)';
  } else if (code === 'EACCES' || code === 'EPERM') {
    message = `cannot open: permission denied (${code})`;
  } else if (code === 'ENOTDIR') {
    message = 'cannot open: a part of the path is not a folder (ENOTDIR)';
  } else {
    message = `cannot read (${code ?? 'unknown error'})`;
  }
  return new CheckpointError({ file, code: 'ERR_MOE_CHECKPOINT_FILE' }, message, { cause: err });
}

/** Whether anything (a dangling symbolic link included) is at `file`; the kind is not checked. */
export async function isPresent(file: string): Promise<boolean> {
  try {
    await fs.lstat(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw await fileError(file, err);
  }
}

/** stat (following symbolic links) of a path that must be a regular file. */
export async function statRegular(file: string): Promise<Stats> {
  let s: Stats;
  try {
    s = await fs.stat(file);
  } catch (err) {
    throw await fileError(file, err);
  }
  if (!s.isFile()) throw notRegular(file, s);
  return s;
}

/** Opens a regular file for reading (see the top of this file); the caller closes the handle. */
export async function openRegular(file: string): Promise<{ fh: fs.FileHandle; stat: Stats }> {
  const before = await statRegular(file);
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, OPEN_FLAGS);
  } catch (err) {
    throw await fileError(file, err);
  }
  try {
    const stat = await fh.stat();
    if (!stat.isFile()) throw notRegular(file, stat);
    if (stat.ino !== before.ino || stat.dev !== before.dev) {
      throw new CheckpointError({ file, code: 'ERR_MOE_CHECKPOINT_FILE' }, 'replaced by another file while it was being opened');
    }
    return { fh, stat };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** Fills `dest` from `position`; a short file is a CheckpointError naming it. */
export async function readFully(fh: fs.FileHandle, dest: Uint8Array, position: number, file: string, tensor?: string): Promise<void> {
  /** One read call at most this big (Node caps a read at 2 GiB - 1). */
  const MAX_READ_BYTES = 1 << 30;
  let done = 0;
  while (done < dest.length) {
    const want = Math.min(dest.length - done, MAX_READ_BYTES);
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(dest, done, want, position + done));
    } catch (err) {
      throw await fileError(file, err);
    }
    if (bytesRead === 0) {
      throw new CheckpointError({ file, tensor, code: 'ERR_MOE_CHECKPOINT_FILE' },
        `the file ends at byte ${position + done}, before byte ${position + dest.length} (truncated since it was opened?)`);
    }
    done += bytesRead;
  }
}

/**
 * A JSON file of the checkpoint (config.json, the index): a regular file of at most `maxBytes`,
 * UTF-8 (a byte-order mark is skipped), valid JSON. File faults are ERR_MOE_CHECKPOINT_FILE,
 * the others `code`; no message quotes the file's text.
 */
export async function readJsonFile(file: string, maxBytes: number, code: CheckpointErrorCode): Promise<unknown> {
  const { fh, stat } = await openRegular(file);
  let bytes: Buffer;
  try {
    if (stat.size > maxBytes) {
      throw new CheckpointError({ file, code }, `${stat.size} bytes: larger than the ${maxBytes} bytes such a file can be`);
    }
    bytes = Buffer.alloc(stat.size);
    await readFully(fh, bytes, 0, file);
  } finally {
    await fh.close();
  }
  const bad = utf8ErrorOffset(bytes);
  if (bad >= 0) throw new CheckpointError({ file, code }, `not valid UTF-8 text (byte ${bad})`);
  const text = bytes.toString('utf8', bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0);
  const parsed = parseJson(text);
  if ('error' in parsed) throw new CheckpointError({ file, code }, parsed.error);
  return parsed.value;
}
