//! Hand-written CPU kernels for the fast path (`csrc/fused.cpp`): the blog's LayerNorm
//! and dropout, each one pass forward and one backward where libtorch's eager ops make
//! many (and draw dropout's random numbers on one thread); causal attention and the
//! feed-forward layer, each one autograd node around libtorch's BLAS, without the copies
//! and per-op overhead of the same computation in eager ops.

use tch::{Device, Kind, Tensor};

extern "C" {
    fn chargpt_blog_layer_norm(
        x: *const torch_sys::C_tensor,
        gamma: *const torch_sys::C_tensor,
        beta: *const torch_sys::C_tensor,
        eps: f64,
    ) -> *mut torch_sys::C_tensor;
    fn chargpt_blog_layer_norm_ops(
        x: *const torch_sys::C_tensor,
        gamma: *const torch_sys::C_tensor,
        beta: *const torch_sys::C_tensor,
        eps: f64,
    ) -> *mut torch_sys::C_tensor;
    fn chargpt_fast_dropout(x: *const torch_sys::C_tensor, p: f64) -> *mut torch_sys::C_tensor;
    fn chargpt_causal_attention(qkv: *const torch_sys::C_tensor, heads: i64, scale: f64, p: f64) -> *mut torch_sys::C_tensor;
    fn chargpt_causal_attention_available() -> std::os::raw::c_int;
    fn chargpt_cpu_autocast_enabled() -> std::os::raw::c_int;
    fn chargpt_kernel_threads() -> std::os::raw::c_int;
    fn chargpt_feed_forward(
        x: *const torch_sys::C_tensor,
        w1: *const torch_sys::C_tensor,
        b1: *const torch_sys::C_tensor,
        w2: *const torch_sys::C_tensor,
        b2: *const torch_sys::C_tensor,
        p: f64,
    ) -> *mut torch_sys::C_tensor;
}

/// How many threads the kernels' parallel loops use now: libtorch's thread count, as
/// they share its OpenMP runtime (1 if the shim was built without OpenMP; see build.rs).
pub fn kernel_threads() -> usize {
    // SAFETY: no arguments, and the loop's body cannot throw, so no C++ exception crosses.
    unsafe { chargpt_kernel_threads() as usize }
}

/// Whether the one-pass kernels apply: fp32 tensors on the CPU.
pub fn applies(x: &Tensor) -> bool {
    x.device() == Device::Cpu && x.kind() == Kind::Float
}

/// The blog's LayerNorm over the last dim (unbiased std, `eps` added to the std) in one
/// pass forward and one backward, with autograd. `x`, `gamma` and `beta` must be fp32 on
/// the CPU, with `gamma` and `beta` as long as `x`'s last dim (the kernel checks, and a
/// violation is a [`LibtorchError`] panic, as tch's own ops panic).
pub fn blog_layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Tensor {
    // SAFETY: the pointers are live tch tensors borrowed for the call; the C++ side checks
    // device, dtype and sizes before it reads their memory, catches every exception, and
    // returns a new owned at::Tensor* or null.
    checked("fused LayerNorm", unsafe { chargpt_blog_layer_norm(x.as_ptr(), gamma.as_ptr(), beta.as_ptr(), eps) })
}

/// The blog's LayerNorm over the last dim as one autograd node of libtorch ops, its
/// backward in closed form (`csrc/device_ops.cpp`): the GPU form's, on any device and
/// float dtype. Violations (sizes, eps) are a [`LibtorchError`] panic, as above.
pub fn blog_layer_norm_ops(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Tensor {
    // SAFETY: as for blog_layer_norm: borrowed live tensors, checked and guarded in C++.
    checked("LayerNorm", unsafe { chargpt_blog_layer_norm_ops(x.as_ptr(), gamma.as_ptr(), beta.as_ptr(), eps) })
}

/// Training-mode dropout with probability `p` in `[0, 1)`: each element kept with
/// probability `1 - p` and scaled by `1 / (1 - p)`, in one parallel pass each way, with
/// autograd. The masks come from a counter-based generator seeded by one draw from
/// libtorch's CPU generator (so `manual_seed` and saved generator states fix them).
/// `x` must be fp32 on the CPU and `p` in `[0, 1)` (the kernel checks, as above).
pub fn dropout(x: &Tensor, p: f64) -> Tensor {
    // SAFETY: as for blog_layer_norm: a borrowed live tensor, checked and guarded in C++.
    checked("fused dropout", unsafe { chargpt_fast_dropout(x.as_ptr(), p) })
}

/// Whether [`causal_attention`] can run: it calls the BLAS inside libtorch (MKL's
/// `sgemm_` in the PyTorch wheels), which another libtorch build may not carry.
pub fn attention_available() -> bool {
    // SAFETY: reads whether a weak symbol resolved; no arguments, no side effects.
    unsafe { chargpt_causal_attention_available() != 0 }
}

/// Causal self-attention of `heads` heads on the fused QKV matmul's output `qkv`
/// (`[B, T, 3 * heads * head_size]`: per position every head's query, then every key, then
/// every value), scores scaled by `scale`, attention-weight dropout `p` in `[0, 1)` (masks
/// as [`dropout`]'s), with autograd: `[B, T, heads * head_size]`, heads in order. The
/// products are BLAS calls on the rows as they lie, so no operand or gradient is copied
/// into a head-major layout. `qkv` must be fp32 on the CPU (the kernel checks, as above).
pub fn causal_attention(qkv: &Tensor, heads: i64, scale: f64, p: f64) -> Tensor {
    // SAFETY: as for blog_layer_norm: a borrowed live tensor, checked and guarded in C++.
    checked("fused attention", unsafe { chargpt_causal_attention(qkv.as_ptr(), heads, scale, p) })
}

/// Whether [`feed_forward`] serves `x`: fp32 on the CPU, outside bf16 autocast (under
/// which its matmuls would produce bf16 for kernels that read fp32).
pub fn feed_forward_applies(x: &Tensor) -> bool {
    // SAFETY: reads libtorch's thread-local autocast flag; no arguments, cannot throw.
    applies(x) && unsafe { chargpt_cpu_autocast_enabled() == 0 }
}

/// The feed-forward layer `relu(x W1^T + b1)`, then `W2^T + b2` and dropout `p` (masks as
/// [`dropout`]'s) when `second` is `Some((W2, b2))`, as one autograd node: matmuls without
/// a bias copy, bias, ReLU and dropout in place, bias gradients summed in the ReLU mask's
/// pass over a fixed split of rows. Weights are `[out, in]` as `nn.Linear` stores them,
/// everything fp32 on the CPU, `p` in `[0, 1)` and 0 without a second layer (the kernel
/// checks, as above).
pub fn feed_forward(x: &Tensor, w1: &Tensor, b1: &Tensor, second: Option<(&Tensor, &Tensor)>, p: f64) -> Tensor {
    let (w2, b2) = second.map_or((std::ptr::null(), std::ptr::null()), |(w, b)| (w.as_ptr(), b.as_ptr()));
    // SAFETY: as for blog_layer_norm: borrowed live tensors (or null for no second layer),
    // checked and guarded in C++.
    checked("fused feed-forward", unsafe { chargpt_feed_forward(x.as_ptr(), w1.as_ptr(), b1.as_ptr(), w2, b2, p) })
}

/// Takes ownership of the kernel's result, or raises the kernel's error.
fn checked(what: &str, ptr: *mut torch_sys::C_tensor) -> Tensor {
    if ptr.is_null() {
        crate::ffi::raise(crate::ffi::last_error(what));
    }
    // SAFETY: a non-null result is a fresh `new at::Tensor`, owned by nobody else;
    // Tensor::from_ptr takes it over and frees it on drop.
    unsafe { Tensor::from_ptr(ptr) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The composite formula, op by op, as the faithful path computes it.
    fn reference(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
        let mean = x.mean_dim(-1, true, Kind::Float);
        let std = x.std_dim(-1, true, true);
        gamma * (x - mean) / (std + 1e-6) + beta
    }

    fn inputs(seed: i64) -> (Tensor, Tensor, Tensor) {
        tch::manual_seed(seed);
        let x = (Tensor::randn([3, 70, 128], (Kind::Float, Device::Cpu)) * 3.0 + 1.0).set_requires_grad(true);
        let gamma = Tensor::randn([128], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let beta = Tensor::randn([128], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        (x, gamma, beta)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn layer_norm_forward_and_gradients_match_the_composite_formula() {
        let _rng = crate::rng_lock();
        let (x, gamma, beta) = inputs(1);
        let upstream = Tensor::randn([3, 70, 128], (Kind::Float, Device::Cpu));
        let run = |y: Tensor| {
            let g = Tensor::run_backward(&[(&y * &upstream).sum(Kind::Float)], &[&x, &gamma, &beta], false, false);
            (y.detach(), g)
        };
        let (y0, g0) = run(reference(&x, &gamma, &beta));
        // The one-pass CPU kernel, and the GPU form's node of libtorch ops.
        for (what, (y1, g1)) in
            [("kernel", run(blog_layer_norm(&x, &gamma, &beta, 1e-6))), ("node", run(blog_layer_norm_ops(&x, &gamma, &beta, 1e-6)))]
        {
            assert!(max_diff(&y0, &y1) < 1e-5, "{what}: forward differs by {}", max_diff(&y0, &y1));
            for (name, (a, b)) in ["x", "gamma", "beta"].iter().zip(g0.iter().zip(&g1)) {
                let d = max_diff(a, b);
                assert!(d < 1e-4, "{what}: grad of {name} differs by {d}");
            }
        }
    }

    #[test]
    fn constant_rows_get_finite_gradients_like_torch() {
        let _rng = crate::rng_lock();
        // std = 0: torch's std backward masks the 0/0; the kernel must not produce NaN.
        let x = Tensor::ones([4, 16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let gamma = Tensor::ones([16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let beta = Tensor::zeros([16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let up = Tensor::randn([4, 16], (Kind::Float, Device::Cpu));
        let composite = Tensor::run_backward(&[(reference(&x, &gamma, &beta) * &up).sum(Kind::Float)], &[&x], false, false);
        for norm in [blog_layer_norm, blog_layer_norm_ops] {
            let fused = Tensor::run_backward(&[(norm(&x, &gamma, &beta, 1e-6) * &up).sum(Kind::Float)], &[&x], false, false);
            assert_eq!(fused[0].isfinite().all().int64_value(&[]), 1);
            // The gradient is r * (dxhat - mean(dxhat)) with r = 1/eps = 1e6: compare relatively.
            let scale = composite[0].abs().max().double_value(&[]);
            assert!(max_diff(&fused[0], &composite[0]) <= 1e-6 * scale);
        }
    }

    #[test]
    fn dropout_keeps_the_right_share_scales_and_masks_the_gradient_alike() {
        let _rng = crate::rng_lock();
        tch::manual_seed(3);
        // An odd number of elements: the last one has no partner in its 64-bit draw.
        let x = Tensor::ones([1001, 101], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let y = dropout(&x, 0.2);
        let kept = y.ne(0.0).to_kind(Kind::Float);
        let share = kept.mean(Kind::Float).double_value(&[]);
        assert!((share - 0.8).abs() < 0.005, "kept {share}");
        assert!((y.sum(Kind::Float).double_value(&[]) / kept.sum(Kind::Float).double_value(&[]) - 1.25).abs() < 1e-5);
        // The backward regenerates the same mask: gradient = mask / (1 - p).
        let g = Tensor::run_backward(&[y.sum(Kind::Float)], &[&x], false, false);
        assert!(max_diff(&g[0], &y.detach()) == 0.0);
        // Rows are not copies of each other (the counter covers every element).
        assert!(max_diff(&kept.narrow(0, 0, 1), &kept.narrow(0, 1, 1)) > 0.0);
    }

    #[test]
    fn dropout_masks_follow_the_seed() {
        let _rng = crate::rng_lock();
        let x = Tensor::ones([64, 64], (Kind::Float, Device::Cpu));
        tch::manual_seed(5);
        let (a, b) = (dropout(&x, 0.5), dropout(&x, 0.5));
        tch::manual_seed(5);
        let c = dropout(&x, 0.5);
        assert_eq!(max_diff(&a, &c), 0.0, "same seed, same mask");
        assert!(max_diff(&a, &b) > 0.0, "each call draws a new mask");
    }

    /// Causal attention op by op, as the faithful heads compute it, on the fused layout;
    /// with a [B, heads, T, T] dropout mask (0 or 1 / keep) multiplied into the weights.
    fn attention_reference(qkv: &Tensor, heads: i64, scale: f64, mask: Option<&Tensor>) -> Tensor {
        let (b, t, width) = qkv.size3().unwrap();
        let hs = width / (3 * heads);
        let qkv = qkv.view([b, t, 3, heads, hs]);
        let future = Tensor::ones([t, t], (Kind::Bool, Device::Cpu)).triu(1);
        let outputs: Vec<Tensor> = (0..heads)
            .map(|h| {
                let (q, k, v) = (qkv.select(2, 0).select(2, h), qkv.select(2, 1).select(2, h), qkv.select(2, 2).select(2, h));
                let w = (q.matmul(&k.transpose(-2, -1)) * scale).masked_fill(&future, f64::NEG_INFINITY).softmax(-1, Kind::Float);
                let w = match mask {
                    Some(mask) => w * mask.select(1, h),
                    None => w,
                };
                w.matmul(&v)
            })
            .collect();
        Tensor::cat(&outputs, -1)
    }

    /// Forward and the gradient of every query, key and value equal the op-by-op heads',
    /// for odd sizes (3 sequences, 7 positions, 3 heads of width 5) and a single position.
    #[test]
    fn attention_and_its_gradients_match_the_heads_op_by_op() {
        let _rng = crate::rng_lock();
        tch::manual_seed(8);
        for (b, t, heads, hs) in [(3, 7, 3, 5), (2, 1, 2, 4), (1, 16, 1, 8)] {
            let qkv = Tensor::randn([b, t, 3 * heads * hs], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let upstream = Tensor::randn([b, t, heads * hs], (Kind::Float, Device::Cpu));
            let scale = 0.3;
            let (y0, y1) = (attention_reference(&qkv, heads, scale, None), causal_attention(&qkv, heads, scale, 0.0));
            assert_eq!(y1.size(), [b, t, heads * hs]);
            let rel = |a: &Tensor, e: &Tensor| max_diff(a, e) / e.abs().max().double_value(&[]);
            assert!(rel(&y1, &y0) < 1e-5, "[{b}, {t}, {heads}x{hs}] forward differs by {:.2e}", rel(&y1, &y0));
            let grad = |y: &Tensor| Tensor::run_backward(&[(y * &upstream).sum(Kind::Float)], &[&qkv], false, false).remove(0);
            let (g0, g1) = (grad(&y0), grad(&y1));
            // Per part (queries, keys, values), so that a small part's error is not hidden.
            for (i, part) in ["queries", "keys", "values"].iter().enumerate() {
                let (a, e) = (g1.view([b, t, 3, heads * hs]).select(2, i as i64), g0.view([b, t, 3, heads * hs]).select(2, i as i64));
                let err = if t == 1 && i < 2 { max_diff(&a, &e) } else { rel(&a, &e) };
                assert!(err < 1e-5, "[{b}, {t}, {heads}x{hs}] gradient of the {part} differs by {err:.2e}");
            }
        }
    }

    /// With dropout, the backward is the derivative of the forward with the same mask: a
    /// central difference along a random direction (the seed fixed before each forward)
    /// equals the gradient's projection on it.
    #[test]
    fn attention_dropout_backward_is_the_forward_s_derivative() {
        let _rng = crate::rng_lock();
        tch::manual_seed(9);
        let (b, t, heads, hs) = (2, 12, 2, 4);
        let qkv = Tensor::randn([b, t, 3 * heads * hs], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let upstream = Tensor::randn([b, t, heads * hs], (Kind::Float, Device::Cpu));
        let direction = Tensor::randn([b, t, 3 * heads * hs], (Kind::Float, Device::Cpu));
        let f = |x: &Tensor| {
            tch::manual_seed(77);
            (causal_attention(x, heads, 0.5, 0.4) * &upstream).sum(Kind::Float)
        };
        let g = Tensor::run_backward(&[f(&qkv)], &[&qkv], false, false).remove(0);
        let along = (&g * &direction).sum(Kind::Float).double_value(&[]);
        let eps = 1e-2;
        let (plus, minus) = tch::no_grad(|| (f(&(&qkv + &direction * eps)), f(&(&qkv - &direction * eps))));
        let numeric = (plus.double_value(&[]) - minus.double_value(&[])) / (2.0 * eps);
        assert!((numeric - along).abs() < 1e-2 * along.abs().max(1.0), "numeric {numeric} against the gradient's {along}");
        // The mask is drawn: another seed gives another output, and some weights are dropped.
        tch::manual_seed(78);
        let other = tch::no_grad(|| (causal_attention(&qkv, heads, 0.5, 0.4) * &upstream).sum(Kind::Float));
        assert!((other.double_value(&[]) - f(&qkv).double_value(&[])).abs() > 1e-4, "the seed does not change the mask");
    }

    /// The attention's dropout is the whole-tensor mask of its weights: with the seed fixed,
    /// its output and gradients equal the op-by-op heads' with `dropout`'s mask of a
    /// [B, heads, T, T] tensor of ones, for an odd T (rows that start inside a draw's pair).
    #[test]
    fn attention_dropout_is_the_whole_tensor_mask_of_the_weights() {
        let _rng = crate::rng_lock();
        tch::manual_seed(10);
        let (b, t, heads, hs, p) = (2, 9, 3, 4, 0.3);
        let qkv = Tensor::randn([b, t, 3 * heads * hs], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let upstream = Tensor::randn([b, t, heads * hs], (Kind::Float, Device::Cpu));
        tch::manual_seed(55);
        let mask = dropout(&Tensor::ones([b, heads, t, t], (Kind::Float, Device::Cpu)), p);
        tch::manual_seed(55);
        let fused = causal_attention(&qkv, heads, 0.5, p);
        let reference = attention_reference(&qkv, heads, 0.5, Some(&mask));
        let rel = |a: &Tensor, e: &Tensor| max_diff(a, e) / e.abs().max().double_value(&[]);
        assert!(rel(&fused, &reference) < 1e-5, "forward differs by {:.2e}", rel(&fused, &reference));
        let grad = |y: &Tensor| Tensor::run_backward(&[(y * &upstream).sum(Kind::Float)], &[&qkv], false, false).remove(0);
        let (g1, g0) = (grad(&fused), grad(&reference));
        assert!(rel(&g1, &g0) < 1e-5, "gradient differs by {:.2e}", rel(&g1, &g0));
    }

    /// A feed-forward layer's input and parameters: x [2, 70, d], W1 [h, d], W2 [d, h].
    fn feed_forward_inputs(seed: i64, d: i64, h: i64) -> [Tensor; 5] {
        tch::manual_seed(seed);
        let t = |dims: &[i64]| Tensor::randn(dims, (Kind::Float, Device::Cpu)).set_requires_grad(true);
        [t(&[2, 70, d]), t(&[h, d]) * 0.3, t(&[h]), t(&[d, h]) * 0.3, t(&[d])].map(|x| x.detach().set_requires_grad(true))
    }

    /// FF1 (one layer) and FF2 (two): forward and every gradient equal libtorch's
    /// `linear`, `relu`, `linear` op by op, the bias gradients included.
    #[test]
    fn feed_forward_and_its_gradients_match_the_layers_op_by_op() {
        let _rng = crate::rng_lock();
        for two_layers in [false, true] {
            let (d, h) = (24, if two_layers { 96 } else { 24 });
            let inputs = feed_forward_inputs(10, d, h);
            let [x, w1, b1, w2, b2] = &inputs;
            let reference = {
                let hidden = x.linear(w1, Some(b1)).relu();
                if two_layers {
                    hidden.linear(w2, Some(b2))
                } else {
                    hidden
                }
            };
            let fused = feed_forward(x, w1, b1, two_layers.then_some((w2, b2)), 0.0);
            let used = if two_layers { &inputs[..] } else { &inputs[..3] };
            assert_same_layer(if two_layers { "FF2" } else { "FF1" }, &fused, &reference, used);
        }
    }

    /// `fused` equals `reference` (1e-5), and so does the gradient of every one of `inputs`
    /// (x, W1, b1[, W2, b2]), each relative to its own scale.
    fn assert_same_layer(what: &str, fused: &Tensor, reference: &Tensor, inputs: &[Tensor]) {
        assert!(max_diff(fused, reference) < 1e-5, "{what}: forward differs by {}", max_diff(fused, reference));
        let upstream = Tensor::randn(reference.size(), (Kind::Float, Device::Cpu));
        let grads = |y: &Tensor| Tensor::run_backward(&[(y * &upstream).sum(Kind::Float)], inputs, false, false);
        let (g0, g1) = (grads(reference), grads(fused));
        for (name, (a, e)) in ["x", "W1", "b1", "W2", "b2"].iter().zip(g1.iter().zip(&g0)) {
            let err = max_diff(a, e) / e.abs().max().double_value(&[]);
            assert!(err < 1e-5, "{what}: the gradient of {name} differs by {err:.2e} of its scale");
        }
    }

    /// With dropout: a share p of the outputs is dropped, the kept ones are the layer's
    /// output scaled by 1 / (1 - p), and every gradient is the op-by-op layer's times that
    /// mask (read off the output: exactly 0 where dropped).
    #[test]
    fn feed_forward_dropout_masks_the_output_and_its_gradients_alike() {
        let _rng = crate::rng_lock();
        let inputs = feed_forward_inputs(11, 16, 64);
        let [x, w1, b1, w2, b2] = &inputs;
        let fused = feed_forward(x, w1, b1, Some((w2, b2)), 0.3);
        let mask = fused.ne(0.0).to_kind(Kind::Float).detach();
        let dropped = 1.0 - mask.mean(Kind::Float).double_value(&[]);
        assert!((dropped - 0.3).abs() < 0.03, "dropped {dropped}, not p = 0.3");
        let reference = x.linear(w1, Some(b1)).relu().linear(w2, Some(b2)) * &mask / 0.7;
        assert_same_layer("FF3 with dropout", &fused, &reference, &inputs);
    }

    /// The bias gradients are summed over a fixed split of rows: one thread and two give
    /// the same bits (a row count above libtorch's parallel grain, where its own sums split
    /// by thread).
    #[test]
    fn feed_forward_bias_gradients_do_not_depend_on_the_thread_count() {
        let _rng = crate::rng_lock();
        let before = tch::get_num_threads();
        let [_, w1, b1, w2, b2] = feed_forward_inputs(12, 32, 128);
        let x = Tensor::randn([64, 300, 32], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let grads = |threads: i32| {
            tch::set_num_threads(threads);
            let y = feed_forward(&x, &w1, &b1, Some((&w2, &b2)), 0.0);
            Tensor::run_backward(&[y.square().sum(Kind::Float)], &[&b1, &b2], false, false)
        };
        let (one, two) = (grads(1), grads(2));
        tch::set_num_threads(before);
        assert!(one[0].equal(&two[0]) && one[1].equal(&two[1]), "bias gradients differ between 1 and 2 threads");
    }

    /// The kernels' loops run on libtorch's threads: one with one, two with two. (Compiled
    /// without OpenMP, at::parallel_for runs every loop on the calling thread, and nothing
    /// else notices: the results are the same, only slower.)
    #[test]
    fn the_kernels_run_on_libtorch_s_threads() {
        let _rng = crate::rng_lock();
        let before = tch::get_num_threads();
        tch::set_num_threads(2);
        let two = kernel_threads();
        tch::set_num_threads(1);
        let one = kernel_threads();
        tch::set_num_threads(before);
        assert_eq!((one, two), (1, 2), "kernel threads at 1 and 2 libtorch threads");
    }

    /// The kernels read raw fp32 CPU memory: anything else is refused with libtorch's
    /// message (a `LibtorchError` panic), before any memory is read.
    #[test]
    fn kernels_refuse_what_they_cannot_read() {
        let _rng = crate::rng_lock();
        let refused = |f: &dyn Fn() -> Tensor| -> String {
            let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("refused");
            payload.downcast_ref::<crate::ffi::LibtorchError>().expect("a LibtorchError").0.clone()
        };
        let x = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let ones = Tensor::ones([8], (Kind::Float, Device::Cpu));
        let zeros = Tensor::zeros([8], (Kind::Float, Device::Cpu));
        let msg = refused(&|| blog_layer_norm(&x.to_kind(Kind::Double), &ones, &zeros, 1e-6));
        assert!(msg.contains("float32"), "{msg}");
        let msg = refused(&|| blog_layer_norm(&x, &Tensor::ones([7], (Kind::Float, Device::Cpu)), &zeros, 1e-6));
        assert!(msg.contains("gamma/beta have 7/8 elements"), "{msg}");
        let msg = refused(&|| dropout(&x, 1.5));
        assert!(msg.contains("[0, 1)"), "{msg}");
        let msg = refused(&|| dropout(&x.to_kind(Kind::Half), 0.5));
        assert!(msg.contains("float32"), "{msg}");
        let msg = refused(&|| causal_attention(&Tensor::randn([2, 3, 10], (Kind::Float, Device::Cpu)), 2, 1.0, 0.0));
        assert!(msg.contains("[B, T, 3 * heads * head_size] with 2 heads"), "{msg}");
        let msg = refused(&|| causal_attention(&Tensor::randn([2, 3, 12], (Kind::Float, Device::Cpu)), 2, 1.0, 1.0));
        assert!(msg.contains("[0, 1)"), "{msg}");
        let msg = refused(&|| feed_forward(&x, &Tensor::ones([16, 7], (Kind::Float, Device::Cpu)), &ones, None, 0.0));
        assert!(msg.contains("feed-forward shapes do not fit"), "{msg}");
        let msg = refused(&|| feed_forward(&x, &Tensor::ones([8, 8], (Kind::Float, Device::Cpu)), &ones, None, 0.5));
        assert!(msg.contains("0 without a second layer"), "{msg}");
    }
}
