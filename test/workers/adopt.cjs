// A Worker of test/layer-share.test.ts: adopts the layer a handle stands for, then forwards on
// request; reports the process's RSS around the adoption (the weights are not copied).
'use strict';
const { workerData, parentPort } = require('node:worker_threads');
const moe = require(workerData.pkg);

const rssBefore = process.memoryUsage().rss;
const layer = moe.MoeLayer.adopt(workerData.handle);
const rssAfter = process.memoryUsage().rss;
let again = null;
try {
  moe.MoeLayer.adopt(workerData.handle);
} catch (e) {
  again = { name: e.name, code: e.code, message: e.message };
}
parentPort.postMessage({
  adopted: true, rssGrowth: rssAfter - rssBefore, bytes: layer.bytes, mapped: layer.mapped, hasRouter: layer.hasRouter,
  routing: layer.routing, again,
});
parentPort.on('message', async (m) => {
  if (m.op === 'forward') {
    const out = m.route ? await layer.forward(m.hidden, m.route) : await layer.forward(m.hidden);
    parentPort.postMessage({ out });
  } else if (m.op === 'dispose') {
    layer.dispose();
    parentPort.postMessage({ disposed: true });
  }
});
