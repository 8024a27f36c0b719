#!/usr/bin/env node
// The package.json that ships: the repository's, less the lifecycle scripts that npm counts as
// install scripts of a dependency. `prepare` builds dist/ when the repository is installed
// (a clone's `npm ci`, a git dependency), but npm also lists it for a tarball or folder
// dependency, so `npm install --strict-allow-scripts moe-cpu-0.1.0.tgz` would refuse the
// package (ESTRICTALLOWSCRIPTS). The tarball holds a built dist/ and needs none of them.
//   node scripts/pack-manifest.js strip    (prepack) writes the shipped package.json, keeping
//                                          the original in .pack/package.json
//   node scripts/pack-manifest.js restore  (postpack) puts the original back
// A pack that fails between the two leaves the stripped file: `restore` repairs it, and
// `strip` refuses to run over it.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const manifest = path.join(root, 'package.json');
const saved = path.join(root, '.pack', 'package.json');

// What npm runs, or lists under --strict-allow-scripts, when a dependency is installed
// (@npmcli/arborist install-scripts.js: preinstall, install, postinstall, and prepare for
// anything not from a registry).
const INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall', 'prepare'];

function shippedManifest(pkg) {
  const scripts = Object.fromEntries(Object.entries(pkg.scripts ?? {}).filter(([name]) => !INSTALL_SCRIPTS.includes(name)));
  return { ...pkg, scripts };
}

function main(command) {
  if (command === 'strip') {
    if (fs.existsSync(saved)) {
      throw new Error(`${path.relative(root, saved)} exists: an earlier pack did not finish; run \`node scripts/pack-manifest.js restore\` first`);
    }
    const text = fs.readFileSync(manifest, 'utf8');
    fs.mkdirSync(path.dirname(saved), { recursive: true });
    fs.writeFileSync(saved, text);
    fs.writeFileSync(manifest, `${JSON.stringify(shippedManifest(JSON.parse(text)), null, 2)}\n`);
  } else if (command === 'restore') {
    if (!fs.existsSync(saved)) return;
    fs.copyFileSync(saved, manifest);
    fs.rmSync(path.dirname(saved), { recursive: true });
  } else {
    throw new Error(`usage: node scripts/pack-manifest.js strip|restore (got ${command})`);
  }
}

if (require.main === module) main(process.argv[2]);
module.exports = { INSTALL_SCRIPTS, shippedManifest };
