// Static checks of a prebuilt binary, from its bytes and from the object files it was linked
// from (the staging build of scripts/prebuild.js). Used by scripts/test-platforms.js.
//   - ELF for the right machine; needs only libc, libm, libgcc_s and the loader (libstdc++ is
//     linked in), glibc symbol versions up to kMaxGlibc, no libstdc++ ones; exports only the
//     Node-API entry points.
//   - Portability: instructions beyond the baseline (x64: any VEX/EVEX instruction, i.e. AVX;
//     arm64: SVE and bf16) appear only in objects whose flags in cpp/sources.json enable them,
//     every such object has some (so the classifier sees them), and the linked binary holds
//     exactly the sum of the objects' counts: no other code (libstdc++ included) brings any.
//   - ODR rule of kernel_table.h: ISA objects define no weak (COMDAT) symbols, which the
//     linker could pick over a baseline copy.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');

// The README's "Supported platforms" table says glibc >= 2.34 (Debian 12 has 2.36).
const kMaxGlibc = '2.34';

const ARCH = {
  x64: {
    machine: 'Advanced Micro Devices X86-64',
    tools: { objdump: 'objdump', nm: 'nm', readelf: 'readelf' },
    loader: 'ld-linux-x86-64.so.2',
    // Any mnemonic with the VEX/EVEX `v` prefix, or a ymm/zmm/mask register.
    classes: {
      avx: (mnemonic, operands) =>
        (/^v/.test(mnemonic) && !/^ver[rw]$/.test(mnemonic)) || /%[yz]mm|%k[0-7]/.test(operands),
    },
    enabledBy: { avx: (flags) => flags.some((f) => /^-mavx/.test(f)) },
  },
  arm64: {
    machine: 'AArch64',
    tools: { objdump: 'aarch64-linux-gnu-objdump', nm: 'aarch64-linux-gnu-nm', readelf: 'aarch64-linux-gnu-readelf' },
    loader: 'ld-linux-aarch64.so.1',
    classes: {
      // z/p registers, or the SVE instructions that take only general registers.
      sve: (mnemonic, operands) =>
        /\b[zp]\d{1,2}\b/.test(operands) ||
        /^(ptrues?|pfalse|while(lo|lt|le|ls|hi|hs|gt|ge)|cnt[bhwd]|(inc|dec|sqinc|sqdec|uqinc|uqdec)[bhwdp]|addvl|addpl|rdvl|setffr|rdffrs?|wrffr|cterm(eq|ne))$/.test(mnemonic),
      bf16: (mnemonic) => /^bf(dot|mmla|cvt\w*|mlal[bt])$/.test(mnemonic),
    },
    enabledBy: {
      sve: (flags) => flags.some((f) => /^-march=.*\+sve/.test(f)),
      bf16: (flags) => flags.some((f) => /^-march=.*\+bf16/.test(f)),
    },
  },
};

function tool(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? r.stderr}`);
  return r.stdout;
}

// Instructions of each class in a file's code.
function countClasses(spec, file) {
  const counts = Object.fromEntries(Object.keys(spec.classes).map((c) => [c, 0]));
  for (const line of tool(spec.tools.objdump, [...(spec.objdumpArgs ?? []), '-d', '--no-show-raw-insn', file]).split('\n')) {
    const m = /^\s*[0-9a-f]+:\s*\t(\S+)\s*(.*)$/.exec(line);  // GNU and LLVM objdump
    if (!m) continue;
    const operands = m[2].replace(/<[^>]*>/g, '').replace(/\/\/.*$/, '');
    for (const [name, is] of Object.entries(spec.classes)) if (is(m[1], operands)) counts[name]++;
  }
  return counts;
}

function versionAbove(a, b) {
  const x = a.split('.').map(Number), y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); ++i) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  }
  return false;
}

// [{ name, ok, detail }] for the prebuild of `arch`.
function checkBinaries(arch) {
  const spec = ARCH[arch];
  const results = [];
  const check = (name, ok, detail) => results.push({ name: `linux-${arch}: ${name}`, ok, detail });
  const binary = path.join(root, 'prebuilds', `linux-${arch}`, 'moe-cpu.glibc.node');
  if (!fs.existsSync(binary)) {
    check('prebuild exists', false, `${path.relative(root, binary)} is missing: npm run prebuild`);
    return results;
  }

  const header = tool(spec.tools.readelf, ['-h', binary]);
  check('ELF machine', header.includes(spec.machine), /Machine:\s*(.*)/.exec(header)?.[1]);
  const needed = [...tool(spec.tools.readelf, ['-d', binary]).matchAll(/\(NEEDED\).*\[(.*)\]/g)].map((m) => m[1]);
  const allowed = ['libc.so.6', 'libm.so.6', 'libgcc_s.so.1', spec.loader];
  check('needs only libc, libm, libgcc_s', needed.every((n) => allowed.includes(n)), needed.join(' '));

  const dynsym = tool(spec.tools.objdump, ['-T', binary]);
  const glibc = [...dynsym.matchAll(/\(GLIBC_([0-9.]+)\)/g)].map((m) => m[1]);
  const newest = glibc.reduce((a, b) => (versionAbove(b, a) ? b : a), '0');
  check(`glibc symbol versions <= ${kMaxGlibc}`, !versionAbove(newest, kMaxGlibc), `newest GLIBC_${newest}`);
  const cxx = [...new Set([...dynsym.matchAll(/\((GLIBCXX|CXXABI)_[0-9.]+\)/g)].map((m) => m[0]))];
  check('no libstdc++ symbol versions', cxx.length === 0, cxx.join(' ') || 'none');
  const exported = dynsym.split('\n').filter((l) => /\s(g|w)\s.*\.text/.test(l) || /\sDF\s\.text/.test(l))
    .map((l) => l.trim().split(/\s+/).pop());
  check('exports only Node-API entry points', exported.length > 0 && exported.every((s) => /^(napi|node_api)_/.test(s)),
    exported.join(' '));

  const objRoot = path.join(root, 'build-prebuild', arch, 'build', 'Release', 'obj.target');
  if (!fs.existsSync(objRoot)) {
    check('object files of the build', false, `${path.relative(root, objRoot)} is missing: npm run prebuild`);
    return results;
  }
  checkObjects(spec, arch, objRoot, binary, check);
  return results;
}

// The portability and ODR checks of the header, from the objects under objRoot/<library>/
// (moe_isa_<set> for the ISA files) and the binary linked from them; `spec` as in ARCH, whose
// tools may be swapped for LLVM's to read COFF and Mach-O. `isas`: the sets the build has.
function checkObjects(spec, arch, objRoot, binary, check, isas = null) {
  const sources = require(path.join(root, 'cpp', 'sources.json'));
  const isaFlags = Object.fromEntries(Object.entries(sources.isa[arch]).filter(([n]) => !isas || isas.includes(n))
    .map(([n, v]) => [`moe_isa_${n}`, v.flags]));
  const objects = fs.readdirSync(objRoot, { recursive: true }).filter((f) => f.endsWith('.o'));
  const total = Object.fromEntries(Object.keys(spec.classes).map((c) => [c, 0]));
  const seen = new Set();
  for (const rel of objects.sort()) {
    const target = rel.split(path.sep)[0];
    const flags = isaFlags[target] ?? [];
    const counts = countClasses(spec, path.join(objRoot, rel));
    const shown = Object.entries(counts).map(([c, n]) => `${c} ${n}`).join(', ');
    for (const [cls, n] of Object.entries(counts)) {
      total[cls] += n;
      const enabled = spec.enabledBy[cls](flags);
      if (enabled) check(`${rel}: has ${cls} instructions (its flags enable them)`, n > 0, shown);
      else check(`${rel}: no ${cls} instructions`, n === 0, shown);
    }
    if (target in isaFlags) {
      seen.add(target);
      const weak = tool(spec.tools.nm, ['-C', '--defined-only', path.join(objRoot, rel)])
        .split('\n').filter((l) => /^\S+ [WVu] /.test(l));
      check(`${rel}: defines no weak symbols (ODR)`, weak.length === 0, weak.slice(0, 3).join('; ') || 'none');
    }
  }
  const missing = Object.keys(isaFlags).filter((t) => !seen.has(t));
  check('every ISA file of cpp/sources.json is built', missing.length === 0, missing.join(' ') || 'all');
  const linked = countClasses(spec, binary);
  for (const cls of Object.keys(spec.classes)) {
    check(`linked ${cls} instructions are those of the ISA objects`, linked[cls] === total[cls],
      `binary ${linked[cls]}, objects ${total[cls]}`);
  }
}

module.exports = { checkBinaries, checkObjects, tool, ARCH };
