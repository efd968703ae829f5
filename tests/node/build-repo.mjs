// Build the reference MST for the seeded records with the official
// @atproto/repo implementation and print a JSON summary that perch's Rust
// tests compare against:
//
//   node tests/node/build-repo.mjs <seed> <n>
//   => {"seed":…,"n":…,"root":"<MST root CID>","nodes":[…],"records":[…]}
//
// `nodes` are the sorted CID strings of every MST node block, `records` the
// sorted CID strings of every record block (duplicates can't occur: every
// record carries its own `seq`). Only the MST (the commit's `data`) is
// compared; there is no commit object, signing key or DID involved.
//
// The script also cross-checks the library against itself (node blocks from
// getUnstoredBlocks() vs. a walk of the reloaded tree, record CIDs from
// BlockMap.add vs. cidForLex) and exits non-zero if anything disagrees.

import { pathToFileURL } from 'node:url';
import { cidForLex } from '@atproto/lex-cbor';
import { BlockMap, MST, MemoryBlockstore } from '@atproto/repo';
import { seededRecords } from './seeded.mjs';

function fail(msg) {
  process.stderr.write(`build-repo: ${msg}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  if (argv.length !== 2 || !/^\d+$/.test(argv[0]) || !/^\d+$/.test(argv[1])) {
    fail('usage: node build-repo.mjs <seed:u64> <n>');
  }
  const seed = BigInt(argv[0]);
  if (seed >= 1n << 64n) fail('seed must fit in a u64');
  return { seed, n: Number(argv[1]) };
}

/**
 * Builds the MST for `records` ({ key, record }[]) in a fresh in-memory
 * blockstore. Returns the root CID, the node blocks and the record blocks
 * (both as BlockMaps) and the storage, which afterwards holds all of them.
 */
export async function buildRepo(records) {
  const storage = new MemoryBlockstore();
  const recordBlocks = new BlockMap();
  let mst = await MST.create(storage);
  for (const { key, record } of records) {
    // BlockMap.add encodes with @atproto/lex-cbor and hashes into a CIDv1
    // dag-cbor sha-256, exactly as Repo.formatCommit does for new records.
    const cid = await recordBlocks.add(record);
    mst = await mst.add(key, cid);
  }
  // Serialises every (dirty) node and returns them along with the root.
  const { root, blocks: nodeBlocks } = await mst.getUnstoredBlocks();
  await storage.putMany(nodeBlocks);
  await storage.putMany(recordBlocks);
  return { root, nodeBlocks, recordBlocks, storage };
}

const sortedStrings = (cids) => cids.map((c) => c.toString()).sort();

async function main() {
  const { seed, n } = parseArgs(process.argv.slice(2));
  const records = seededRecords(seed, n);
  const { root, nodeBlocks, recordBlocks, storage } = await buildRepo(records);

  const nodes = sortedStrings(nodeBlocks.cids());
  const recs = sortedStrings(recordBlocks.cids());

  // --- self-checks -------------------------------------------------------
  if (recs.length !== n) fail(`expected ${n} record blocks, got ${recs.length}`);
  // Record CIDs via the library's stand-alone helper.
  const viaHelper = sortedStrings(
    await Promise.all(records.map(({ record }) => cidForLex(record))),
  );
  if (JSON.stringify(viaHelper) !== JSON.stringify(recs)) {
    fail('cidForLex disagrees with BlockMap.add on record CIDs');
  }
  // Reload the tree from storage alone and walk every node.
  const loaded = MST.load(storage, root);
  const walked = [];
  let leaves = 0;
  for await (const entry of loaded.walk()) {
    if (entry.isTree()) walked.push(await entry.getPointer());
    else leaves++;
  }
  if (JSON.stringify(sortedStrings(walked)) !== JSON.stringify(nodes)) {
    fail('walked MST nodes differ from getUnstoredBlocks()');
  }
  if (leaves !== n) fail(`walked ${leaves} leaves, expected ${n}`);
  const listed = await loaded.list();
  for (let i = 1; i < listed.length; i++) {
    if (!(listed[i - 1].key < listed[i].key)) fail('MST leaves out of order');
  }
  // --- output ------------------------------------------------------------
  // The seed is spliced in as raw digits so that seeds above 2^53 stay exact
  // JSON numbers (serde_json reads them as u64).
  const rest = JSON.stringify({ n, root: root.toString(), nodes, records: recs });
  process.stdout.write(`{"seed":${seed.toString()},${rest.slice(1)}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
