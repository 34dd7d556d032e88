//! `api.d.ts` and `api.js`: the `api` and `internal` objects a front end calls functions through.
//!
//! Convex's own codegen writes `ApiFromModules<{ events: typeof events }>`, which needs the
//! TypeScript modules the functions are written in. Ours are Rust, so the same type is written
//! out: nested objects by module path, each function a
//! `FunctionReference<"query" | "mutation" | "action", "public" | "internal", Args, Returns>`.
//! At run time both objects are the `convex` package's `anyApi`, which turns
//! `api.events.get` into the path `"events:get"`, exactly as Convex's generated `api.js` does.

use std::collections::BTreeMap;

use crate::ts::{property, DocShapes, Renderer, Uses};
use crate::{header, ApiFunction, CodegenError, Visibility};

/// One level of the API object: modules nest, functions are leaves.
enum Node<'f> {
    Module(BTreeMap<String, Node<'f>>),
    Function(&'f ApiFunction),
}

/// `events/admin.js:list` → (["events", "admin"], "list"): the property path in `api`.
fn api_path(path: &str) -> Result<(Vec<&str>, &str), CodegenError> {
    let bad = || CodegenError::BadPath {
        path: path.to_string(),
    };
    let (module, name) = path.rsplit_once(':').ok_or_else(bad)?;
    let module = module.strip_suffix(".js").unwrap_or(module);
    if module.is_empty() || name.is_empty() {
        return Err(bad());
    }
    let components: Vec<&str> = module.split('/').collect();
    if components.iter().any(|c| c.is_empty()) {
        return Err(bad());
    }
    Ok((components, name))
}

fn tree<'f>(
    functions: &'f [ApiFunction],
    visibility: Visibility,
) -> Result<BTreeMap<String, Node<'f>>, CodegenError> {
    let mut root = BTreeMap::new();
    for function in functions.iter().filter(|f| f.visibility == visibility) {
        let (modules, name) = api_path(&function.path)?;
        let clash = |name: &str| CodegenError::NameClash {
            path: function.path.clone(),
            name: name.to_string(),
        };
        let mut level = &mut root;
        for module in modules {
            let node = level
                .entry(module.to_string())
                .or_insert_with(|| Node::Module(BTreeMap::new()));
            level = match node {
                Node::Module(children) => children,
                Node::Function(_) => return Err(clash(module)),
            };
        }
        if level
            .insert(name.to_string(), Node::Function(function))
            .is_some()
        {
            return Err(clash(name));
        }
    }
    Ok(root)
}

fn render_level(
    level: &BTreeMap<String, Node<'_>>,
    depth: usize,
    renderer: &mut Renderer<'_>,
    out: &mut String,
) {
    if level.is_empty() {
        out.push_str("{}");
        return;
    }
    let indent = "  ".repeat(depth + 1);
    out.push_str("{\n");
    for (name, node) in level {
        match node {
            Node::Module(children) => {
                out.push_str(&format!("{indent}{}: ", property(name)));
                render_level(children, depth + 1, renderer, out);
                out.push_str(";\n");
            }
            Node::Function(function) => {
                let args = match &function.args {
                    Some(validator) => renderer.render(validator, depth + 1),
                    None => "any".to_string(),
                };
                let returns = match &function.returns {
                    Some(validator) => renderer.render(validator, depth + 1),
                    None => "any".to_string(),
                };
                let display_path = function.path.replacen(".js:", ":", 1);
                out.push_str(&format!(
                    "{indent}/** `{display_path}` */\n{indent}{}: FunctionReference<\"{}\", \"{}\", {args}, {returns}>;\n",
                    property(name),
                    function.kind.as_str(),
                    function.visibility.as_str(),
                ));
            }
        }
    }
    out.push_str(&"  ".repeat(depth));
    out.push('}');
}

/// The text of `api.d.ts`.
pub fn api_d_ts(functions: &[ApiFunction], shapes: &DocShapes) -> Result<String, CodegenError> {
    let mut renderer = Renderer::new(shapes);
    let mut body = String::new();
    for (visibility, what) in [
        (Visibility::Public, "your app's public API"),
        (Visibility::Internal, "your app's internal API"),
    ] {
        let level = tree(functions, visibility)?;
        body.push_str(&format!(
            "/**\n * A utility for referencing the functions of {what}.\n *\n * Usage:\n * ```js\n * const myFunctionReference = {}.myModule.myFunction;\n * ```\n */\nexport declare const {}: ",
            visibility.api_name(),
            visibility.api_name(),
        ));
        render_level(&level, 0, &mut renderer, &mut body);
        body.push_str(";\n\n");
    }
    let mut out = header("Generated `api` utility.");
    out.push_str("import type { FunctionReference } from \"convex/server\";\n");
    out.push_str(&data_model_import(renderer.uses));
    out.push('\n');
    out.push_str(body.trim_end());
    out.push('\n');
    Ok(out)
}

/// `import type { Doc, Id } from "./dataModel.js";`, naming only what the types use.
fn data_model_import(uses: Uses) -> String {
    let names: Vec<&str> = [("Doc", uses.doc), ("Id", uses.id)]
        .into_iter()
        .filter_map(|(name, used)| used.then_some(name))
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(
            "import type {{ {} }} from \"./dataModel.js\";\n",
            names.join(", ")
        )
    }
}

/// The text of `api.js`: both objects are `anyApi`, whose property accesses build the path.
pub fn api_js() -> String {
    let mut out = header("Generated `api` utility.");
    out.push_str(
        "import { anyApi } from \"convex/server\";\n\n\
         /**\n * A utility for referencing the functions of your app's public API.\n *\n * Usage:\n * ```js\n * const myFunctionReference = api.myModule.myFunction;\n * ```\n */\n\
         export const api = anyApi;\n\n\
         /**\n * A utility for referencing the functions of your app's internal API.\n */\n\
         export const internal = anyApi;\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FunctionType;
    use tickethub_value::Validator;

    fn function(path: &str, visibility: Visibility) -> ApiFunction {
        ApiFunction {
            path: path.into(),
            kind: FunctionType::Query,
            visibility,
            args: Some(Validator::Object(BTreeMap::new())),
            returns: Some(Validator::String),
        }
    }

    #[test]
    fn modules_nest_and_visibility_splits() {
        let functions = [
            function("events.js:get", Visibility::Public),
            function("admin/events.js:purge", Visibility::Internal),
            function("events.js:secret", Visibility::Internal),
        ];
        let text = api_d_ts(&functions, &DocShapes::default()).unwrap();
        let api = text.split("export declare const internal").next().unwrap();
        assert!(
            api.contains("export declare const api: {\n  events: {\n    /** `events:get` */\n    get: FunctionReference<\"query\", \"public\", Record<string, never>, string>;\n  };\n};"),
            "{text}"
        );
        assert!(!api.contains("secret"));
        assert!(
            text.contains("admin: {\n    events: {\n      /** `admin/events:purge` */\n      purge: FunctionReference<\"query\", \"internal\""),
            "{text}"
        );
        // Nothing from the data model is used, so nothing is imported.
        assert!(!text.contains("dataModel"));
    }

    #[test]
    fn a_module_and_a_function_of_one_name_clash() {
        let functions = [
            function("a.js:b", Visibility::Public),
            function("a/b.js:c", Visibility::Public),
        ];
        let error = api_d_ts(&functions, &DocShapes::default()).unwrap_err();
        assert_eq!(error.code(), "CodegenNameClash");
        assert!(error.to_string().contains("`b`"), "{error}");
    }

    #[test]
    fn malformed_paths_are_refused() {
        for path in ["nocolon", ":f", "a//b.js:f", "a.js:"] {
            let error = api_path(path).unwrap_err();
            assert_eq!(error.code(), "CodegenBadPath", "{path}");
        }
        assert_eq!(api_path("a/b.js:f").unwrap(), (vec!["a", "b"], "f"));
    }
}
