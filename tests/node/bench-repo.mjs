// Speed reference: how fast the official @atproto/repo builds and exports a
// repository of n seeded records (seed 1), to compare perch against.
//
//   node tests/node/bench-repo.mjs <n>
//   => {"n":…,"mst_build_ms":…,"inserts_per_sec":…,"car_export_ms":…,
//       "car_bytes":…,"car_mb_per_sec":…}
//
// mst_build_ms: from the pre-generated records to the finished tree: encode
//   and hash every record (BlockMap.add), MST.add every key, then
//   getUnstoredBlocks() (computes every node's CID, hence the root) and store
//   node + record blocks in the in-memory blockstore.
// car_export_ms: a CAR v1 of the whole repo (root = MST root; every MST node
//   and record block) written by writeCarStream over MST.carBlockStream() of a
//   tree freshly loaded from the blockstore, every chunk consumed and counted.
// MB is 10^6 bytes. A small untimed warm-up build (seed 2) runs first so the
// figures are not dominated by JIT compilation. Record generation and the CAR
// read-back check afterwards are not timed. A few details go to stderr.

import { BlockMap, MST, MemoryBlockstore, readCarWithRoot, writeCarStream } from '@atproto/repo';
import { seededRecords } from './seeded.mjs';

const ms = (t0, t1) => Number(t1 - t0) / 1e6;
const round3 = (x) => Math.round(x * 1000) / 1000;

async function build(records) {
  const storage = new MemoryBlockstore();
  const recordBlocks = new BlockMap();
  let mst = await MST.create(storage);
  for (const { key, record } of records) {
    const cid = await recordBlocks.add(record);
    mst = await mst.add(key, cid);
  }
  const { root, blocks: nodeBlocks } = await mst.getUnstoredBlocks();
  await storage.putMany(nodeBlocks);
  await storage.putMany(recordBlocks);
  return { storage, root, nodeCount: nodeBlocks.size, recordCount: recordBlocks.size };
}

async function exportCar(storage, root) {
  const chunks = [];
  let bytes = 0;
  const tree = MST.load(storage, root);
  for await (const chunk of writeCarStream(root, tree.carBlockStream())) {
    chunks.push(chunk);
    bytes += chunk.byteLength;
  }
  return { chunks, bytes };
}

async function main() {
  const arg = process.argv[2];
  if (!arg || !/^\d+$/.test(arg) || Number(arg) < 1) {
    process.stderr.write('usage: node bench-repo.mjs <n>\n');
    process.exit(1);
  }
  const n = Number(arg);

  // Warm-up (untimed).
  {
    const { storage, root } = await build(seededRecords(2, Math.min(n, 2000)));
    await exportCar(storage, root);
  }

  const records = seededRecords(1, n);

  const t0 = process.hrtime.bigint();
  const { storage, root, nodeCount, recordCount } = await build(records);
  const t1 = process.hrtime.bigint();
  const { chunks, bytes } = await exportCar(storage, root);
  const t2 = process.hrtime.bigint();

  const buildMs = ms(t0, t1);
  const carMs = ms(t1, t2);

  // Peak RSS so far (KiB), i.e. before the read-back check below allocates.
  const maxRssBeforeCheck = process.resourceUsage().maxRSS;

  // Untimed sanity check: the CAR parses, has the root and every block.
  const car = await readCarWithRoot(Buffer.concat(chunks));
  if (car.root.toString() !== root.toString() || car.blocks.size !== nodeCount + recordCount) {
    process.stderr.write('bench-repo: CAR read-back mismatch\n');
    process.exit(1);
  }
  process.stderr.write(
    `bench-repo: root=${root} nodes=${nodeCount} records=${recordCount} ` +
      `blocks=${car.blocks.size} max_rss_kib_before_check=${maxRssBeforeCheck} ` +
      `node=${process.version}\n`,
  );

  process.stdout.write(
    JSON.stringify({
      n,
      mst_build_ms: round3(buildMs),
      inserts_per_sec: Math.round(n / (buildMs / 1000)),
      car_export_ms: round3(carMs),
      car_bytes: bytes,
      car_mb_per_sec: round3(bytes / 1e6 / (carMs / 1000)),
    }) + '\n',
  );
}

await main();
