//! CAR reading and whole-repo verification (importRepo's path): never
//! panics, and a repo that loads holds only blocks that hash to their CIDs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perch::repo::BlockSource;
use perch::repo::car::{CarLimits, CarReader};

fn limits() -> CarLimits {
    CarLimits {
        max_header_bytes: 4096,
        max_block_bytes: 64 * 1024,
        max_blocks: 10_000,
        max_total_bytes: 1 << 20,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = CarReader::new(data, limits()) {
        // The codec is only a label (any is allowed in a CAR); the digest is
        // what must match.
        while let Ok(Some((cid, bytes))) = r.next_block() {
            assert_eq!(
                cid.hash().digest(),
                perch::cid::sha256(&bytes),
                "a block that does not hash to its CID was returned"
            );
        }
    }
    if let Ok(repo) = perch::repo::export::load_repo_car(data, limits(), None) {
        assert!(repo.blocks.get_block(&repo.commit_cid).unwrap().is_some());
    }
});
