// Static checks of the prebuilds of scripts/prebuild-zig.js (musl, win32, darwin), from their
// bytes and from their objects in build-prebuild/<target>/obj/. Used by scripts/test-platforms.js.
//   - The file format and machine; on macOS the minimum version (11.0) and, for arm64, a code
//     signature (macOS kills unsigned arm64 code).
//   - Dynamic dependencies: musl's libc.so only; win32: KERNEL32, msvcrt and NODE.EXE, and from
//     NODE.EXE only Node-API functions; darwin: libSystem only, and only Node-API functions left
//     to `-undefined dynamic_lookup`. No libstdc++ or libc++ dylib: Zig links libc++ in.
//   - Exports: the Node-API entry points (win32: and libunwind's, which Zig's libc++ exports
//     from a DLL; harmless there, as every import names the DLL it comes from).
//   - The instruction-set checks of scripts/check-binaries.js (checkObjects).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const { ARCH, checkObjects, tool } = require('./check-binaries.js');
const { TARGETS, isaSets } = require('./prebuild-zig.js');

const root = path.join(__dirname, '..');
const NAPI = /^_?(napi|node_api)_\w+$/;
const ENTRY = ['napi_register_module_v1', 'node_api_module_get_api_version_v1'];

// LLVM's tools read ELF, COFF and Mach-O of both architectures (SVE and bf16 decoded only when
// asked for).
const llvm = (arch) => ({ ...ARCH[arch], tools: { objdump: 'llvm-objdump', nm: 'llvm-nm', readelf: 'llvm-readelf' },
  objdumpArgs: arch === 'arm64' ? ['--mattr=+sve,+bf16'] : [] });

function checkElf(target, binary, check) {
  const header = tool('llvm-readelf', ['-h', binary]);
  check('ELF machine', header.includes(ARCH[target.arch].machine), /Machine:\s*(.*)/.exec(header)?.[1]);
  const needed = [...tool('llvm-readelf', ['-d', binary]).matchAll(/\(NEEDED\).*\[(.*)\]/g)].map((m) => m[1]);
  check('needs only libc.so (musl)', needed.length === 1 && needed[0] === 'libc.so', needed.join(' '));
  const dynsym = tool('llvm-nm', ['-D', binary]).split('\n').filter(Boolean);
  const versions = dynsym.filter((l) => /@/.test(l));
  check('no symbol versions (glibc or libstdc++)', versions.length === 0, versions.slice(0, 3).join('; ') || 'none');
  const exported = dynsym.filter((l) => /^\S+ [TWDBR] /.test(l)).map((l) => l.split(' ').pop());
  check('exports only Node-API entry points', exported.length > 0 && exported.every((s) => ENTRY.includes(s)), exported.join(' '));
}

function checkPe(binary, check) {
  const headers = tool('objdump', ['-p', binary]);
  check('PE32+ DLL for x86-64', /file format pei-x86-64/.test(headers) && /Characteristics[^]*?DLL/.test(headers),
    /file format (\S+)/.exec(headers)?.[1]);
  const dlls = [...headers.matchAll(/DLL Name: (\S+)/g)].map((m) => m[1]);
  check('imports only from KERNEL32, msvcrt and NODE.EXE',
    dlls.every((d) => ['KERNEL32.dll', 'msvcrt.dll', 'NODE.EXE'].includes(d)) && dlls.includes('NODE.EXE'), dlls.join(' '));
  // The import table: a "DLL Name:" line, then one line per function until a blank line.
  const fromNode = /DLL Name: NODE\.EXE\n[^\n]*\n((?:\t[^\n]+\n)*)/.exec(headers)?.[1]
    .split('\n').map((l) => l.trim().split(/\s+/).pop()).filter(Boolean) ?? [];
  const odd = fromNode.filter((s) => !NAPI.test(s));
  check('takes only Node-API functions from NODE.EXE', fromNode.length > 0 && odd.length === 0,
    odd.join(' ') || `${fromNode.length} napi functions`);
  const exported = [...(/\[Ordinal\/Name Pointer\] Table\n((?:\t[^\n]+\n)*)/.exec(headers)?.[1] ?? '')
    .matchAll(/\]\s+(\S+)/g)].map((m) => m[1]);
  const unexpected = exported.filter((s) => !ENTRY.includes(s) && !/^(_Unwind_\w+|unw_\w+|_GCC_specific_handler)$/.test(s));
  check('exports the Node-API entry points, and else only libunwind\'s',
    exported.includes(ENTRY[0]) && unexpected.length === 0, unexpected.join(' ') || exported.filter((s) => ENTRY.includes(s)).join(' '));
}

function checkMachO(target, binary, check) {
  const headers = tool('llvm-objdump', ['--macho', '--private-headers', binary]);
  const cpu = target.arch === 'arm64' ? 'ARM64' : 'X86_64';
  check(`Mach-O dylib for ${cpu}`, new RegExp(`MH_MAGIC_64\\s+${cpu}\\s.*DYLIB`).test(headers),
    /MH_MAGIC_64.*/.exec(headers)?.[0].replace(/\s+/g, ' '));
  const minos = /LC_BUILD_VERSION[^]*?minos (\S+)/.exec(headers)?.[1] ?? /LC_VERSION_MIN_MACOSX[^]*?version (\S+)/.exec(headers)?.[1];
  check('minimum macOS 11.0', minos === '11.0', `minos ${minos}`);
  if (target.arch === 'arm64') check('code signature (ad hoc)', /LC_CODE_SIGNATURE/.test(headers), 'LC_CODE_SIGNATURE');
  const dylibs = [...headers.matchAll(/cmd LC_LOAD_(?:WEAK_)?DYLIB\n[^]*?name (\S+)/g)].map((m) => m[1]);
  const id = /cmd LC_ID_DYLIB\n[^]*?name (\S+)/.exec(headers)?.[1];
  check('install name holds no build path', id === '@rpath/moe-cpu.node', id);
  check('links only libSystem', dylibs.length === 1 && dylibs[0] === '/usr/lib/libSystem.B.dylib', dylibs.join(' '));
  const nm = tool('llvm-nm', ['-m', binary]).split('\n').filter(Boolean);
  const lookedUp = nm.filter((l) => /dynamically looked up/.test(l)).map((l) => l.trim().split(/\s+/)[2]);
  const odd = lookedUp.filter((s) => !NAPI.test(s));
  check('only Node-API functions are left to dynamic lookup', lookedUp.length > 0 && odd.length === 0,
    odd.join(' ') || `${lookedUp.length} napi functions`);
  const exported = nm.filter((l) => /\(__TEXT,__text\) external/.test(l) && !/non-external/.test(l)).map((l) => l.split(/\s+/).pop());
  check('exports only Node-API entry points', exported.length > 0 && exported.every((s) => ENTRY.includes(s.slice(1))),
    exported.join(' '));
}

// [{ name, ok, detail }] for the prebuild of target `name` (a key of TARGETS).
function checkCrossBinary(name) {
  const target = TARGETS[name];
  const results = [];
  const check = (what, ok, detail) => results.push({ name: `${name}: ${what}`, ok, detail });
  const binary = path.join(root, 'prebuilds', target.file);
  if (!fs.existsSync(binary)) {
    check('prebuild exists', false, `prebuilds/${target.file} is missing: npm run prebuild -- ${name}`);
    return results;
  }
  if (target.os === 'linux') checkElf(target, binary, check);
  else if (target.os === 'win32') checkPe(binary, check);
  else checkMachO(target, binary, check);
  const objRoot = path.join(root, 'build-prebuild', name, 'obj');
  if (!fs.existsSync(objRoot)) {
    check('object files of the build', false, `${path.relative(root, objRoot)} is missing: npm run prebuild -- ${name}`);
    return results;
  }
  checkObjects(llvm(target.arch), target.arch, objRoot, binary, check, isaSets(name));
  return results;
}

module.exports = { checkCrossBinary };
