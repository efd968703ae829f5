//! Records generated from the schemas: valid by construction (every required property,
//! some optional ones, strings and arrays within their bounds, a sample of each string
//! format). For property tests, the cross-check against the official validator, and
//! benchmarks; nothing on a request path uses it.

use std::collections::BTreeMap;

use super::schema::{self, Def, Format};
use super::{Catalog, KeyRule};
use crate::cbor::Ipld;

const TID: &str = "3jzfcijpj2z2a";
const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
const NOW: &str = "2026-12-03T12:00:00.000Z";
const POST_URI: &str = "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/3jzfcijpj2z2a";
const POST_CID: &str = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";

impl Catalog {
    /// A valid record of `collection` and a record key its type allows, from `seed` (not 0).
    pub fn sample(&self, collection: &str, seed: u64) -> Option<(String, Ipld)> {
        let def = self.record(collection)?;
        let mut g = Gen {
            cat: self,
            state: seed.max(1),
        };
        let record = g.value(&Def::Object(def.record.clone()), 0);
        let rkey = match &def.key {
            KeyRule::Tid => TID.to_owned(),
            KeyRule::Nsid => "com.example.thing".to_owned(),
            KeyRule::Any => "any-key".to_owned(),
            KeyRule::Literal(l) => l.clone(),
        };
        Some((rkey, record))
    }
}

pub(super) struct Gen<'a> {
    pub cat: &'a Catalog,
    pub state: u64,
}

impl Gen<'_> {
    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }

    pub fn value(&mut self, def: &Def, depth: usize) -> Ipld {
        match def {
            Def::Null => Ipld::Null,
            Def::Boolean(b) => Ipld::Bool(b.konst.unwrap_or_else(|| self.coin())),
            Def::Integer(d) => {
                if let Some(c) = d.konst {
                    return Ipld::Integer(c);
                }
                if let Some(e) = &d.enumeration {
                    return Ipld::Integer(e[self.below(e.len() as u64) as usize]);
                }
                let lo = d.minimum.unwrap_or(-1000);
                let hi = d.maximum.unwrap_or(lo + 1000).max(lo);
                Ipld::Integer(lo + self.below((hi - lo + 1) as u64) as i64)
            }
            Def::String(d) => Ipld::String(self.string(d)),
            Def::Bytes {
                min_length,
                max_length,
            } => {
                let lo = min_length.unwrap_or(0);
                let hi = max_length.unwrap_or(lo + 16).min(lo + 16);
                Ipld::Bytes(vec![7; (lo + self.below(hi - lo + 1)) as usize])
            }
            Def::CidLink => Ipld::Link(crate::cid::for_cbor(b"link")),
            Def::Blob(b) => {
                let mime = match &b.accept {
                    None => "application/octet-stream".to_owned(),
                    Some(a) => {
                        let pick = &a[self.below(a.len() as u64) as usize];
                        match pick.strip_suffix("/*") {
                            Some("*") => "application/octet-stream".to_owned(),
                            Some(ty) => format!("{ty}/x-generated"),
                            None => pick.clone(),
                        }
                    }
                };
                let size = self.below(b.max_size.unwrap_or(1 << 20) + 1);
                let mut m = BTreeMap::new();
                m.insert("$type".into(), Ipld::String("blob".into()));
                m.insert("ref".into(), Ipld::Link(crate::cid::for_raw(b"blob")));
                m.insert("mimeType".into(), Ipld::String(mime));
                m.insert("size".into(), Ipld::Integer(size as i64));
                Ipld::Map(m)
            }
            Def::Array {
                items,
                min_length,
                max_length,
            } => {
                let lo = min_length.unwrap_or(0);
                let cap = if depth > 5 { lo } else { lo + 3 };
                let hi = max_length.unwrap_or(cap).min(cap).max(lo);
                let n = lo + self.below(hi - lo + 1);
                Ipld::List((0..n).map(|_| self.value(items, depth + 1)).collect())
            }
            Def::Object(o) => self.object(o, depth),
            Def::Record(r) => self.object(&r.record, depth),
            Def::Ref(i) => self.value(&self.cat.defs[*i], depth + 1),
            Def::Union(u) => {
                let (name, i) = &u.refs[self.below(u.refs.len() as u64) as usize];
                let mut v = self.value(&self.cat.defs[*i], depth + 1);
                if let Ipld::Map(m) = &mut v {
                    m.insert("$type".into(), Ipld::String(name.clone()));
                }
                v
            }
            Def::Unknown => {
                let mut m = BTreeMap::new();
                m.insert("anything".into(), Ipld::Integer(1));
                Ipld::Map(m)
            }
            Def::Token | Def::Other => unreachable!("not a data type"),
        }
    }

    fn object(&mut self, o: &schema::ObjectDef, depth: usize) -> Ipld {
        let mut m = BTreeMap::new();
        for (k, d) in &o.properties {
            if o.required.contains(k) || (depth < 5 && self.coin()) {
                m.insert(k.clone(), self.value(d, depth + 1));
            }
        }
        Ipld::Map(m)
    }

    fn string(&mut self, d: &schema::StringDef) -> String {
        if let Some(c) = &d.konst {
            return c.clone();
        }
        if let Some(e) = &d.enumeration {
            return e[self.below(e.len() as u64) as usize].clone();
        }
        if let Some(f) = d.format {
            return match f {
                Format::AtIdentifier => "alice.example.com",
                Format::AtUri => POST_URI,
                Format::Cid => POST_CID,
                Format::Datetime => NOW,
                Format::Did => DID,
                Format::Handle => "alice.example.com",
                Format::Language => "en-GB",
                Format::Nsid => "com.example.thing",
                Format::RecordKey => "self",
                Format::Tid => TID,
                Format::Uri => "https://example.com/a",
            }
            .to_owned();
        }
        let lo = d.min_length.unwrap_or(0).max(d.min_graphemes.unwrap_or(0));
        let hi = d
            .max_length
            .unwrap_or(u64::MAX)
            .min(d.max_graphemes.unwrap_or(u64::MAX))
            .min(lo + 40);
        let n = lo + self.below(hi - lo + 1);
        (0..n)
            .map(|i| if i % 7 == 3 { 'é' } else { 'a' })
            .collect::<String>()
            // 'é' is two bytes: trim back to the byte limit on a char boundary.
            .chars()
            .scan(0u64, |bytes, c| {
                *bytes += c.len_utf8() as u64;
                (*bytes <= d.max_length.unwrap_or(u64::MAX)).then_some(c)
            })
            .collect()
    }
}
