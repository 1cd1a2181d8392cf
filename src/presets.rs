//! The trainer presets, read from `src/presets.json`: the one file that also gives the
//! benchmarks and the PyTorch scripts their values.

use serde::Deserialize;
use std::sync::OnceLock;

/// A named set of trainer values; flags override them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The blog's trainer: B 64, Tmax 256, C 384, H 6, L 6, dropout 0.3, lr 1e-3, 10,000
    /// steps, evaluation every 1,000 over 10 batches, 1,000 characters (the default on CUDA).
    Blog,
    /// For a 2-core CPU: B 32, Tmax 64, C 128, H 4, L 4, dropout 0.2, lr 3e-3, 3,001 steps,
    /// evaluation every 250 over 20 batches, 500 characters (the default on a CPU).
    Cpu,
    /// A smoke test of seconds: B 8, Tmax 16, C 16, H 2, L 2, dropout 0.1, 41 steps.
    Tiny,
}

/// The values of one preset, as `src/presets.json` holds them.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct PresetValues {
    pub about: String,
    pub batch_size: i64,
    pub block_size: i64,
    pub n_embed: i64,
    pub num_heads: i64,
    pub block_layers: i64,
    pub dropout: f64,
    pub lr: f64,
    pub steps: i64,
    pub eval_every: i64,
    pub eval_steps: i64,
    pub generate_chars: usize,
}

#[derive(Deserialize)]
struct PresetFile {
    blog: PresetValues,
    cpu: PresetValues,
    tiny: PresetValues,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Blog, Preset::Cpu, Preset::Tiny];

    pub fn values(self) -> &'static PresetValues {
        static FILE: OnceLock<PresetFile> = OnceLock::new();
        let file = FILE.get_or_init(|| serde_json::from_str(include_str!("presets.json")).expect("src/presets.json is valid"));
        match self {
            Preset::Blog => &file.blog,
            Preset::Cpu => &file.cpu,
            Preset::Tiny => &file.tiny,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::Blog => "blog",
            Preset::Cpu => "cpu",
            Preset::Tiny => "tiny",
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blog preset is docs/MODELS.md's trainer, read from the sentence that states it
    /// ("The blog's defaults: `batch_size 64`, ..."), and the cpu preset's sizes are those
    /// of its second table row (`Tmax 64, C 128, H 4, L 4`).
    #[test]
    fn presets_hold_the_values_of_models_md() {
        let spec = include_str!("../docs/MODELS.md");
        let defaults = spec.split("The blog's defaults:").nth(1).unwrap().split("The optimiser").next().unwrap();
        let quoted: Vec<&str> = defaults.split('`').skip(1).step_by(2).collect();
        let value = |name: &str| -> f64 {
            let q = quoted.iter().find(|q| q.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name} in {quoted:?}"));
            q[name.len() + 1..].replace('_', "").parse().unwrap()
        };
        let blog = Preset::Blog.values();
        for (name, ours) in [
            ("batch_size", blog.batch_size as f64),
            ("n_embed", blog.n_embed as f64),
            ("num_heads", blog.num_heads as f64),
            ("block_size", blog.block_size as f64),
            ("block_layers", blog.block_layers as f64),
            ("dropout", blog.dropout),
            ("lr", blog.lr),
            ("log_step", blog.eval_every as f64),
        ] {
            assert_eq!(ours, value(name), "blog preset's {name}");
        }
        // The bare numbers, in the sentence's order: the steps, the evaluation batches per
        // split, the generated characters.
        let bare: Vec<i64> = quoted.iter().filter(|q| !q.contains(' ')).map(|q| q.replace('_', "").parse().unwrap()).collect();
        assert_eq!(bare, [blog.steps, blog.eval_steps, blog.generate_chars as i64], "blog preset's steps, eval batches, characters");
        let cpu = Preset::Cpu.values();
        let row = format!("`Tmax {}, C {}, H {}, L {}`", cpu.block_size, cpu.n_embed, cpu.num_heads, cpu.block_layers);
        assert!(spec.contains(&row), "docs/MODELS.md has no table row for the cpu preset's sizes {row}");
    }

    /// The help texts (`chargpt train --help`) state the sizes the file holds.
    #[test]
    fn help_texts_match_the_file() {
        use clap::ValueEnum;
        for preset in Preset::ALL {
            let v = preset.values();
            let help = preset.to_possible_value().unwrap().get_help().unwrap().to_string();
            let sizes = format!(
                "B {}, Tmax {}, C {}, H {}, L {}, dropout {}",
                v.batch_size, v.block_size, v.n_embed, v.num_heads, v.block_layers, v.dropout
            );
            assert!(help.contains(&sizes), "{preset}: {help:?} does not say {sizes:?}");
        }
    }
}
