fn main() {
    println!("perch {}", env!("CARGO_PKG_VERSION"));
}
