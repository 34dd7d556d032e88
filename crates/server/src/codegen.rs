//! `tickethub codegen --out <dir> [--schema schema.toml]`: write `<dir>/_generated/` for a
//! TypeScript front end (`api.d.ts`, `api.js`, `dataModel.d.ts`) from the app's registry and
//! schema. No data dir, no ports: it only reads the app.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tickethub_codegen::{ApiFunction, FunctionType, Visibility};
use tickethub_runtime::{App, FunctionKind, Schema};

/// The directory name Convex front ends import from (`convex/_generated/api`).
pub const GENERATED_DIR: &str = "_generated";

#[derive(clap::Args, Debug, Clone)]
pub struct CodegenArgs {
    /// The directory to write `_generated/` into (Convex's `convex/` directory).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A schema.toml to use instead of the one built into the binary.
    #[arg(long)]
    pub schema: Option<PathBuf>,
}

/// What one run wrote, for the summary line.
#[derive(Debug)]
pub struct CodegenSummary {
    pub dir: PathBuf,
    pub functions: usize,
    pub tables: usize,
}

/// The registry as the code generator sees it. HTTP actions are not called through `api`.
pub fn api_functions(app: &App) -> Vec<ApiFunction> {
    app.functions()
        .filter_map(|spec| {
            let kind = match spec.kind() {
                FunctionKind::Query => FunctionType::Query,
                FunctionKind::Mutation => FunctionType::Mutation,
                FunctionKind::Action => FunctionType::Action,
                FunctionKind::HttpAction => return None,
            };
            let visibility = match spec.visibility() {
                tickethub_runtime::Visibility::Public => Visibility::Public,
                tickethub_runtime::Visibility::Internal => Visibility::Internal,
            };
            Some(ApiFunction {
                path: spec.path().to_string(),
                kind,
                visibility,
                args: spec.args_validator().cloned(),
                returns: spec.returns_validator().cloned(),
            })
        })
        .collect()
}

pub fn run(
    app: &App,
    default_schema_toml: &str,
    args: &CodegenArgs,
) -> anyhow::Result<CodegenSummary> {
    let schema_text = match &args.schema {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("could not read the schema file {}", path.display()))?,
        None => default_schema_toml.to_string(),
    };
    let schema = Schema::from_toml(&schema_text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let functions = api_functions(app);
    let generated = tickethub_codegen::generate(&functions, &schema)
        .map_err(|e| anyhow::anyhow!("{} ({})", e, e.code()))?;
    let dir = args.out.join(GENERATED_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    for (name, text) in generated.files() {
        write_replacing(&dir.join(name), text)?;
    }
    Ok(CodegenSummary {
        dir,
        functions: functions.len(),
        tables: schema.tables.len(),
    })
}

/// Write beside the target and rename over it, so an editor or `tsc --watch` never reads a
/// half-written file.
fn write_replacing(path: &Path, text: &str) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text)
        .with_context(|| format!("could not write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("could not replace {}", path.display()))
}
