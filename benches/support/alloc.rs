//! The benches allocate as the binary does (see `src/main.rs`): with mimalloc.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
