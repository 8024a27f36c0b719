// The loader's file system calls, on Node's callback API rather than fs/promises. On Node 20 an
// fs/promises call made while its Worker is being terminated fails an internal assertion
// (`req_wrap_async != nullptr` in node_file.cc: the promise for the request cannot be created
// any more) and aborts the whole process; the callback API creates its request object in
// JavaScript, so a terminating Worker simply stops. test/worker-termination.test.ts covers it.
import * as fs from 'node:fs';

function settle<T>(resolve: (v: T) => void, reject: (e: unknown) => void) {
  return (err: NodeJS.ErrnoException | null, value: T) => (err ? reject(err) : resolve(value));
}

export function stat(file: string): Promise<fs.Stats> {
  return new Promise((resolve, reject) => fs.stat(file, settle(resolve, reject)));
}

export function lstat(file: string): Promise<fs.Stats> {
  return new Promise((resolve, reject) => fs.lstat(file, settle(resolve, reject)));
}

export function readdir(dir: string): Promise<string[]> {
  return new Promise((resolve, reject) => fs.readdir(dir, settle(resolve, reject)));
}

/** An open file descriptor; the owner must close() it (nothing closes it on GC). */
export class FileHandle {
  constructor(readonly fd: number) {}

  stat(): Promise<fs.Stats> {
    return new Promise((resolve, reject) => fs.fstat(this.fd, settle(resolve, reject)));
  }

  read(dest: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    return new Promise((resolve, reject) =>
      fs.read(this.fd, dest, offset, length, position, (err, bytesRead) => (err ? reject(err) : resolve({ bytesRead }))));
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) => fs.close(this.fd, (err) => (err ? reject(err) : resolve())));
  }
}

export function open(file: string, flags: number): Promise<FileHandle> {
  return new Promise((resolve, reject) =>
    fs.open(file, flags, (err, fd) => (err ? reject(err) : resolve(new FileHandle(fd)))));
}
