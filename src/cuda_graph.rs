//! CUDA Graphs for the fast path's training step (`--cuda-graphs`): after a few eager
//! steps on a side stream, one step (forward, backward, fused AdamW) is captured into a
//! graph (`csrc/cuda.cpp`) and every later step is that graph replayed on new
//! batches. The host then issues a handful of launches a step instead of hundreds, so a
//! step costs what its kernels cost on the GPU. Where capture is not possible the step
//! stays eager, and a line says why.

use crate::ffi::{check, last_error, LibtorchError};
use crate::models::Model;
use crate::optim::AdamW;
use crate::precision::Precision;
use std::os::raw::c_void;
use tch::{Device, Tensor};

extern "C" {
    fn chargpt_cuda_graphs_built() -> i32;
    fn chargpt_graph_new(device: i64) -> *mut c_void;
    fn chargpt_graph_free(graph: *mut c_void);
    fn chargpt_graph_warmup_begin(graph: *mut c_void) -> i32;
    fn chargpt_graph_warmup_end(graph: *mut c_void) -> i32;
    fn chargpt_graph_capture_begin(graph: *mut c_void) -> i32;
    fn chargpt_graph_capture_end(graph: *mut c_void) -> i32;
    fn chargpt_graph_replay(graph: *mut c_void) -> i32;
    fn chargpt_cuda_peak_bytes(device: i64, reset: i32) -> i64;
}

/// The most memory libtorch has held for tensors on `device` since the last reset (None off
/// CUDA or where not known); `reset` starts a new count.
pub fn peak_memory_bytes(device: Device, reset: bool) -> Option<i64> {
    let Device::Cuda(index) = device else { return None };
    // SAFETY: plain values in and out; the C++ side catches every exception.
    let peak = unsafe { chargpt_cuda_peak_bytes(index as i64, reset as i32) };
    (peak >= 0).then_some(peak)
}

/// Eager steps before the capture, on the graph's stream (PyTorch's whole-network capture
/// warms up with three): libtorch's lazy set-up (cuBLAS workspaces, the optimiser's state)
/// happens there, not inside the capture.
pub const WARMUP_STEPS: usize = 3;

/// Why `--cuda-graphs` cannot apply, or None where it can: a CUDA device, the fast path
/// (its fused AdamW keeps the step counts on the device, so a replayed update reads the
/// right ones), and a chargpt built with CUDA's headers.
pub fn unavailable(device: Device, implementation: crate::models::Implementation) -> Option<String> {
    if !device.is_cuda() {
        return Some("--cuda-graphs needs a CUDA device (--device cuda); leave it out on the CPU".into());
    }
    if implementation != crate::models::Implementation::Fast {
        return Some("--cuda-graphs needs --impl fast (the faithful path's AdamW computes its bias corrections on the host at every step, as PyTorch's does, which a graph would freeze)".into());
    }
    // SAFETY: no arguments, returns a constant.
    if unsafe { chargpt_cuda_graphs_built() } == 0 {
        return Some(
            "--cuda-graphs: this chargpt was built without CUDA's headers (make setup installs them), so it has no CUDA graphs".into(),
        );
    }
    None
}

/// One CUDA graph and the side stream it is captured on.
pub struct Graph(*mut c_void);

impl Graph {
    fn new(device: Device) -> Result<Self, LibtorchError> {
        let Device::Cuda(index) = device else { return Err(LibtorchError("CUDA graphs need a CUDA device".into())) };
        // SAFETY: returns a new heap object or null (with the reason kept for last_error).
        let ptr = unsafe { chargpt_graph_new(index as i64) };
        if ptr.is_null() {
            return Err(last_error("creating a CUDA graph"));
        }
        Ok(Graph(ptr))
    }

    /// Runs `f` with its ops on the graph's stream.
    fn warmup<T>(&self, f: impl FnOnce() -> T) -> Result<T, LibtorchError> {
        // SAFETY: `self.0` is the live graph made in `new`; the C++ side catches everything.
        check(unsafe { chargpt_graph_warmup_begin(self.0) }.into(), "CUDA graph warm-up")?;
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        // SAFETY: as above.
        let end = check(unsafe { chargpt_graph_warmup_end(self.0) }.into(), "CUDA graph warm-up");
        let out = out.unwrap_or_else(|payload| std::panic::resume_unwind(payload));
        end.map(|()| out)
    }

    /// Records the ops `f` issues (they do not run). A failure inside `f` (an op that
    /// cannot be captured) ends the capture and is returned as the reason.
    fn capture<T>(&self, f: impl FnOnce() -> T) -> Result<T, LibtorchError> {
        // SAFETY: as above.
        check(unsafe { chargpt_graph_capture_begin(self.0) }.into(), "beginning a CUDA graph capture")?;
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        // SAFETY: as above; also after a failed capture, to leave the stream usable.
        let end = check(unsafe { chargpt_graph_capture_end(self.0) }.into(), "ending a CUDA graph capture");
        match out {
            Ok(out) => end.map(|()| out),
            Err(payload) => match crate::panics::to_error(payload) {
                crate::panics::PanicError::Libtorch(m) => Err(LibtorchError(m)),
                // A bug in chargpt is not a reason to stay eager: it goes on unwinding.
                internal => std::panic::resume_unwind(Box::new(internal.to_string())),
            },
        }
    }

    fn replay(&self) -> Result<(), LibtorchError> {
        // SAFETY: as above.
        check(unsafe { chargpt_graph_replay(self.0) }.into(), "replaying the CUDA graph")
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from chargpt_graph_new and is freed once, here.
        unsafe { chargpt_graph_free(self.0) }
    }
}

/// The training step as a CUDA graph: its inputs and its loss live at fixed addresses that
/// every replay reads and writes.
pub struct GraphedStep {
    graph: Graph,
    x: Tensor,
    y: Tensor,
    loss: Tensor,
}

/// Where a model's graphed training stands: warming up (eager steps on the graph's stream),
/// captured, or eager for good (capture not possible).
pub enum StepGraph {
    WarmingUp { graph: Option<Graph>, steps_left: usize },
    Captured(GraphedStep),
    Eager,
}

impl StepGraph {
    /// A graph for `device`, warming up; eager (with the reason) where it cannot be made.
    pub fn new(device: Device) -> (Self, Option<String>) {
        match Graph::new(device) {
            Ok(graph) => (StepGraph::WarmingUp { graph: Some(graph), steps_left: WARMUP_STEPS }, None),
            Err(e) => (StepGraph::Eager, Some(format!("CUDA graphs off: {e}; training stays eager"))),
        }
    }

    /// One training step on (x, y), returning its loss (on the device): eager while warming
    /// up or where capture failed, the graph replayed once captured. The step after the
    /// warm-up is captured, then replayed. A failed capture turns graphs off and says why
    /// in the returned line; the step is then taken eagerly.
    pub fn step(
        &mut self,
        model: &Model,
        opt: &mut AdamW,
        precision: Precision,
        x: &Tensor,
        y: &Tensor,
    ) -> anyhow::Result<(Tensor, Option<String>)> {
        let device = x.device();
        let eager = |opt: &mut AdamW| -> anyhow::Result<Tensor> {
            let loss = precision.forward(device, || model.loss(x, y, true));
            opt.zero_grad()?;
            loss.backward();
            opt.step()?;
            Ok(loss.detach())
        };
        match self {
            StepGraph::Eager => Ok((eager(opt)?, None)),
            StepGraph::Captured(g) => Ok((g.replay(x, y, opt)?, None)),
            StepGraph::WarmingUp { graph, steps_left } if *steps_left > 0 => {
                let g = graph.as_ref().expect("a graph while warming up");
                let loss = g.warmup(|| eager(opt))??;
                *steps_left -= 1;
                Ok((loss, None))
            }
            StepGraph::WarmingUp { graph, .. } => {
                let graph = graph.take().expect("a graph while warming up");
                match GraphedStep::capture(graph, model, opt, precision, x, y) {
                    Ok(mut g) => {
                        let loss = g.replay(x, y, opt)?;
                        *self = StepGraph::Captured(g);
                        Ok((loss, None))
                    }
                    Err(e) => {
                        *self = StepGraph::Eager;
                        let note = format!("CUDA graphs off: the step could not be captured ({e}); training stays eager");
                        Ok((eager(opt)?, Some(note)))
                    }
                }
            }
        }
    }
}

impl GraphedStep {
    /// Captures one step of `model` with `opt` at the shapes of `x` and `y`. The capture
    /// runs nothing: the optimiser's step counts are put back where they were.
    fn capture(graph: Graph, model: &Model, opt: &mut AdamW, precision: Precision, x: &Tensor, y: &Tensor) -> Result<Self, LibtorchError> {
        let (x, y) = (x.copy(), y.copy());
        let counts = opt.step_counts();
        // Gradients made inside the capture live in the graph's memory; replays write them.
        opt.zero_grad()?;
        let captured = graph.capture(|| {
            let loss = precision.forward(x.device(), || model.loss(&x, &y, true));
            loss.backward();
            opt.step().map(|()| loss.detach())
        });
        opt.set_step_counts(counts);
        let loss = captured??;
        Ok(GraphedStep { graph, x, y, loss })
    }

    /// One step: the batch copied into the graph's inputs, the graph replayed, its loss
    /// copied out (the next replay overwrites it).
    fn replay(&mut self, x: &Tensor, y: &Tensor, opt: &mut AdamW) -> Result<Tensor, LibtorchError> {
        self.x.copy_(x);
        self.y.copy_(y);
        self.graph.replay()?;
        opt.count_replayed_step();
        Ok(self.loss.copy())
    }
}
