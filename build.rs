//! Link-time set-up that tch does not do for us:
//! - an rpath to libtorch's lib dir, so the binary runs without LD_LIBRARY_PATH;
//! - `libtorch_cuda.so` linked with `--no-as-needed` when present: nothing in our code
//!   references it, so the linker would drop it and CUDA would silently look absent;
//! - a small C++ shim for what tch does not expose: the CPU generator's state (for
//!   resumable runs that draw the same random numbers as uninterrupted ones), AdamW's
//!   update / `grad = None` exactly as torch.optim.AdamW performs them, the precision
//!   switches, and the fast path's CPU kernels (attention, feed-forward, LayerNorm, dropout).
use std::path::PathBuf;

fn main() {
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys did not report its libtorch lib dir"));
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-L{},-ltorch_cuda,--as-needed", lib.display());
    }
    let include = lib.parent().expect("libtorch lib dir has a parent").join("include");
    let mut shim = cc::Build::new();
    // at::parallel_for is a header template whose `#pragma omp parallel` only exists when
    // the including file is compiled with OpenMP: without it every fused kernel runs on one
    // thread. The kernels must share libtorch's OpenMP runtime (its thread pool and
    // set_num_threads), so they link the libgomp that libtorch ships (one soname, so one
    // copy loaded), never the compiler's own.
    let gomp = lib.join("libgomp.so.1");
    if gomp.exists() {
        shim.flag("-fopenmp");
        println!("cargo:rustc-link-arg={}", gomp.display());
    } else {
        // Lets the `omp simd` loops vectorise; at::parallel_for then runs serially.
        shim.flag("-fopenmp-simd");
        println!("cargo:warning=no libgomp.so.1 beside libtorch: the fast path's CPU kernels will run on one thread");
    }
    // The CUDA part of the shim (csrc/cuda.cpp: graphs, memory, the GPU's description) needs
    // CUDA's runtime headers, which the PyTorch wheel's CUDA packages carry beside it (site-packages/nvidia/*/include); without them,
    // or without libtorch_cuda, the shim says "no CUDA graphs" and training stays eager.
    let cuda_include = lib.join("libtorch_cuda.so").exists().then(|| cuda_runtime_include(&lib)).flatten();
    if let Some(dir) = &cuda_include {
        shim.include(dir).define("CHARGPT_CUDA_GRAPHS", None);
        // The graph code calls c10's CUDA functions directly (libtorch_cuda only needs them).
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-L{},-lc10_cuda,--as-needed", lib.display());
    }
    shim.cpp(true)
        .file("csrc/rng_state.cpp")
        .file("csrc/adamw.cpp")
        .file("csrc/precision.cpp")
        .file("csrc/fused.cpp")
        .file("csrc/error.cpp")
        .file("csrc/counter.cpp")
        .file("csrc/device_ops.cpp")
        .file("csrc/cuda.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .warnings(false)
        .compile("chargpt_shim");
    println!("cargo:rerun-if-changed=csrc/rng_state.cpp");
    println!("cargo:rerun-if-changed=csrc/adamw.cpp");
    println!("cargo:rerun-if-changed=csrc/precision.cpp");
    println!("cargo:rerun-if-changed=csrc/fused.cpp");
    println!("cargo:rerun-if-changed=csrc/error.cpp");
    println!("cargo:rerun-if-changed=csrc/counter.cpp");
    println!("cargo:rerun-if-changed=csrc/device_ops.cpp");
    println!("cargo:rerun-if-changed=csrc/cuda.cpp");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=build.rs");
}

/// The folder with `cuda_runtime_api.h` among the wheel's CUDA packages beside libtorch
/// (`<site-packages>/torch/lib` -> `<site-packages>/nvidia/<any>/include`).
fn cuda_runtime_include(lib: &std::path::Path) -> Option<PathBuf> {
    let torch = lib.canonicalize().ok()?.parent()?.to_path_buf();
    let nvidia = torch.parent()?.join("nvidia");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&nvidia)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("include"))
        .filter(|dir| dir.join("cuda_runtime_api.h").exists())
        .collect();
    found.sort();
    found.pop()
}
