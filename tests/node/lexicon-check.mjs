// Validates a corpus of records with the official @atproto/lexicon, for
// tests/it/lexicon_crosscheck.rs: reads [{collection, record}] (atproto JSON) from the
// file named by argv[2], loads the Lexicon documents under argv[3], and prints
// [{ok, message}] in the same order.
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Lexicons, jsonToLex } from '@atproto/lexicon'

function docs(dir) {
  const out = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...docs(p))
    else if (name.endsWith('.json')) out.push(JSON.parse(readFileSync(p, 'utf8')))
  }
  return out
}

const corpus = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const lex = new Lexicons(docs(process.argv[3]))
const results = corpus.map(({ collection, record }) => {
  try {
    lex.assertValidRecord(collection, jsonToLex(record))
    return { ok: true }
  } catch (e) {
    return { ok: false, message: String(e.message) }
  }
})
process.stdout.write(JSON.stringify(results))
