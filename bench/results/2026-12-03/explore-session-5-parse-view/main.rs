//! Parse cost of one callback's `data` in isolation: the full parse (`parse_object`, every
//! member into a `serde_json::Value`, what the callback view was before 9afa758) against the
//! lean view (`parse_callback_data`, only the viewed members parsed, the rest checked and
//! skipped). Alternating rounds of ITER parses each, on the bench's seed result; prints every
//! round's ns/parse and the medians.
use std::hint::black_box;
use std::time::Instant;

const ITER: u32 = 20_000;
const ROUNDS: usize = 9;

fn main() {
    let path = std::env::args().nth(1).expect("seed path");
    let data = std::fs::read(&path).expect("read seed");
    println!("seed {} ({} bytes), {ROUNDS} alternating rounds of {ITER} parses", path, data.len());
    let (mut full, mut lean) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..ITER {
            let parsed = faceid_protocol::payload::parse_object(black_box(&data)).unwrap();
            black_box(parsed);
        }
        let f = t.elapsed().as_nanos() as f64 / ITER as f64;
        let t = Instant::now();
        for _ in 0..ITER {
            let parsed = faceid_protocol::payload::parse_callback_data(black_box(&data)).unwrap();
            black_box(parsed);
        }
        let l = t.elapsed().as_nanos() as f64 / ITER as f64;
        println!("round {round}: full {f:.0} ns, lean {l:.0} ns, lean/full {:.2}", l / f);
        full.push(f);
        lean.push(l);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (f, l) = (median(&mut full), median(&mut lean));
    println!("median: full {f:.0} ns, lean {l:.0} ns, lean/full {:.2}", l / f);
}
