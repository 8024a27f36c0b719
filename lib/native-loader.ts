// Finds and loads the native addon. Where it looks, in order:
//   1. MOE_CPU_BINARY, a path to a .node file (absolute, or relative to the working
//      directory): loaded as given, nothing else is tried, so a wrong path is an error rather
//      than a silent fall-back to another binary.
//   2. The package folder: build/Release/*.node (a source build), then
//      prebuilds/<platform>-<arch>/ (node-gyp-build's rules; PREBUILDS_ONLY=1 skips build/).
//   3. When this code runs from a bundle (its folder's parent is not the moe-cpu package), the
//      same search in the bundle's own folder, where the README's Bundling recipe copies
//      prebuilds/. Never the parent folder: that is the bundling app's, whose build/Release
//      may hold another addon.
// Every failure is ERR_MOE_NO_BINARY and says what was searched, what was found there and the
// command that fixes it; it never claims a platform is not prebuilt when it only failed to
// find the prebuilds folder.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { ERR_NO_BINARY, codedError, type CodedError } from './errors';

const PACKAGE_NAME = 'moe-cpu';
/** The package's script that builds the addon from source (`node-gyp rebuild`, npm's own node-gyp). */
export const SOURCE_BUILD_SCRIPT = 'build:gyp';

/** Where the addon is searched: the package folder, or the folder of a bundle. */
export interface SearchRoot {
  dir: string;
  bundled: boolean;
}

/** The package folder when `codeDir` (dist/ or lib/) is inside it, else `codeDir` itself: a bundle. */
export function searchRoot(codeDir: string): SearchRoot {
  const parent = path.join(codeDir, '..');
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(parent, 'package.json'), 'utf8')) as { name?: unknown };
    if (pkg.name === PACKAGE_NAME) return { dir: parent, bundled: false };
  } catch {
    // no readable package.json beside: not the package layout
  }
  return { dir: codeDir, bundled: true };
}

// "linux-x64 (glibc, Node-API 8)": the flavours node-gyp-build picks between, and the ABI.
function thisPlatform(): string {
  const tags = ['Node-API 8'];
  if (process.platform === 'linux') {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    tags.unshift(header?.glibcVersionRuntime ? 'glibc' : 'musl');
  }
  return `${process.platform}-${process.arch} (${tags.join(', ')})`;
}

// The prebuilt binaries under `dir`/prebuilds, e.g. "linux-arm64 (glibc)", from the files
// prebuilds/<platform>-<arch>/moe-cpu[.<libc>].node themselves; null when there is no such folder.
function prebuiltPlatforms(dir: string): string[] | null {
  const prebuilds = path.join(dir, 'prebuilds');
  let platforms: string[];
  try {
    platforms = fs.readdirSync(prebuilds).sort();
  } catch {
    return null;
  }
  return platforms.flatMap((platform) => {
    let files: string[];
    try {
      files = fs.readdirSync(path.join(prebuilds, platform));
    } catch {
      return [];
    }
    return files.filter((f) => f.endsWith('.node')).map((f) => {
      const libc = /\.(glibc|musl)\.node$/.exec(f);
      return libc ? `${platform} (${libc[1]})` : platform;
    });
  });
}

// A shell word for `cd`: quoted only when it has to be (POSIX sh and cmd.exe both take "…").
function shellPath(p: string): string {
  return /^[\w@%+=:,./-]+$/.test(p) ? p : JSON.stringify(p);
}

/** The exact command that builds the addon from source for the package in `dir`. */
export function sourceBuildCommand(dir: string): string {
  return `cd ${shellPath(dir)} && npm run ${SOURCE_BUILD_SCRIPT}`;
}

function noBinary(message: string, cause?: unknown): CodedError<Error> {
  return codedError(new Error(`moe-cpu: ${message}`, cause === undefined ? undefined : { cause }), ERR_NO_BINARY);
}

// require() of a .node file, with a load failure (wrong architecture, a glibc too old, not an
// addon) reported as ours, naming the file and the way out.
function requireAddon<T>(file: string, remedy: string): T {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(file) as T;
  } catch (err) {
    // An error with one of our codes was thrown by the addon's own start-up (it loaded, then
    // refused a setting such as MOE_CPU_ISA naming a kernel set this CPU lacks): the setting is
    // what to fix, not the binary, so that error is the one to see.
    if (isOwnError(err)) throw err;
    throw noBinary(`${file} could not be loaded on ${thisPlatform()}: ${(err as Error).message.split('\n')[0]}. ${remedy}`, err);
  }
}

function isOwnError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_MOE_');
}

function fromEnvironment<T>(value: string): T {
  const file = path.resolve(value);
  if (path.extname(file) !== '.node') {
    throw noBinary(`MOE_CPU_BINARY=${value}: expected the path of a .node file (the addon), e.g. prebuilds/linux-x64/moe-cpu.glibc.node`);
  }
  if (!fs.existsSync(file)) {
    throw noBinary(`MOE_CPU_BINARY=${value}: no such file (${file}); unset MOE_CPU_BINARY to use the package's own binary`);
  }
  return requireAddon<T>(file, 'Point MOE_CPU_BINARY at a binary built for this platform, or unset it');
}

/**
 * Loads the addon for the code in `codeDir` (the folder of the compiled loader): see the
 * search order at the top of this file.
 */
export function loadNativeAddon<T>(codeDir: string, env: NodeJS.ProcessEnv = process.env): T {
  if (env.MOE_CPU_BINARY) return fromEnvironment<T>(env.MOE_CPU_BINARY);
  const root = searchRoot(codeDir);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const gypBuild = require('node-gyp-build') as { resolve(dir: string): string };
  let file: string;
  try {
    file = gypBuild.resolve(root.dir);
  } catch (err) {
    if (!/No native build was found/.test((err as Error).message)) throw err;
    throw notFound(root, err);
  }
  const remedy = root.bundled
    ? 'Copy the prebuilds/ folder of the installed moe-cpu package next to the bundle again, or set MOE_CPU_BINARY'
    : `Build it from source (a C++17 compiler, Python 3 and make): ${sourceBuildCommand(root.dir)}`;
  return requireAddon<T>(file, remedy);
}

function notFound(root: SearchRoot, cause: unknown): CodedError<Error> {
  const platform = thisPlatform();
  const prebuilt = prebuiltPlatforms(root.dir);
  const found = prebuilt === null
    ? `there is no ${path.join(root.dir, 'prebuilds')} folder`
    : `its prebuilds/ folder holds ${prebuilt.length ? `${prebuilt.join(', ')} only` : 'no binary'}`;
  if (root.bundled) {
    return noBinary(
      `no binary for ${platform}: moe-cpu runs from a bundle in ${root.dir}, and ${found}. ` +
        `Copy node_modules/moe-cpu/prebuilds/ to ${path.join(root.dir, 'prebuilds')}/, or set MOE_CPU_BINARY ` +
        'to the path of a .node file; see "Bundling" in the README.', cause);
  }
  // node-gyp-build reads PREBUILDS_ONLY itself, from the process's environment.
  const sourceBuild = process.env.PREBUILDS_ONLY ? 'PREBUILDS_ONLY is set, so build/Release was not looked at'
    : 'there is no source build (build/Release)';
  return noBinary(
    `no binary for ${platform} in ${root.dir}: ${found}, and ${sourceBuild}. ` +
      `Build it from source (a C++17 compiler, Python 3 and make): ${sourceBuildCommand(root.dir)}` +
      ' — or set MOE_CPU_BINARY to the path of a .node file; see "Installing" in the README.', cause);
}
