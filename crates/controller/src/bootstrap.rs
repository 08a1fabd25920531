//! First-start state: the `guest` and `whisk.system` namespaces with OpenWhisk's well-known
//! development keys, and the public `whisk.system/utils` and `whisk.system/samples` packages.

use brisk_model::{
    Action, AuthKey, Entity, EntityName, EntityPath, Exec, Package, Parameters, SemVer,
    SystemLimits, now_millis,
};
use brisk_store::Store;
use serde_json::{Value, json};

/// OpenWhisk's development key of `guest`.
pub const GUEST_KEY: &str = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";
/// OpenWhisk's development key of `whisk.system`.
pub const SYSTEM_KEY: &str = "789c46b1-71f6-4ed5-8c54-816aa4f8c502:abczO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";

/// Code of the alarms feed actions: they run inside the server (see `crate::alarms`), so this
/// only explains itself if read.
const FEED_STUB: &str = "// Handled by the Brisk server's built-in alarms provider.\nfunction main() {\n  return { error: 'this feed runs inside the server' };\n}\n";

struct CatalogAction {
    package: &'static str,
    name: &'static str,
    code: &'static str,
    description: &'static str,
    params: &'static [&'static str],
}

const CATALOG: &[CatalogAction] = &[
    CatalogAction {
        package: "utils",
        name: "echo",
        code: include_str!("../catalog/echo.js"),
        description: "Returns the input",
        params: &[],
    },
    CatalogAction {
        package: "utils",
        name: "sort",
        code: include_str!("../catalog/sort.js"),
        description: "Sorts an array of strings",
        params: &["lines"],
    },
    CatalogAction {
        package: "utils",
        name: "cat",
        code: include_str!("../catalog/cat.js"),
        description: "Concatenates input into a string",
        params: &["lines"],
    },
    CatalogAction {
        package: "utils",
        name: "split",
        code: include_str!("../catalog/split.js"),
        description: "Splits a string into an array of strings",
        params: &["payload", "separator"],
    },
    CatalogAction {
        package: "utils",
        name: "head",
        code: include_str!("../catalog/head.js"),
        description: "Extracts the head of an array",
        params: &["lines", "num"],
    },
    CatalogAction {
        package: "utils",
        name: "date",
        code: include_str!("../catalog/date.js"),
        description: "Current date and time",
        params: &[],
    },
    CatalogAction {
        package: "alarms",
        name: "alarm",
        code: FEED_STUB,
        description: "Fire a trigger on a cron schedule",
        params: &[
            "cron",
            "trigger_payload",
            "timezone",
            "startDate",
            "stopDate",
        ],
    },
    CatalogAction {
        package: "alarms",
        name: "once",
        code: FEED_STUB,
        description: "Fire a trigger once at a date",
        params: &["date", "trigger_payload", "deleteAfterFire"],
    },
    CatalogAction {
        package: "alarms",
        name: "interval",
        code: FEED_STUB,
        description: "Fire a trigger every N minutes",
        params: &["minutes", "trigger_payload", "startDate", "stopDate"],
    },
    CatalogAction {
        package: "samples",
        name: "helloWorld",
        code: include_str!("../catalog/hello.js"),
        description: "Returns a friendly greeting",
        params: &["name", "place"],
    },
];

/// What `bootstrap` did.
#[derive(Debug, Default)]
pub struct Bootstrapped {
    pub created_namespaces: Vec<String>,
    pub installed_catalog: bool,
}

/// Creates missing default namespaces and the catalogue. Idempotent.
pub async fn bootstrap(
    store: &dyn Store,
    limits: &SystemLimits,
) -> brisk_store::Result<Bootstrapped> {
    let mut out = Bootstrapped::default();
    for (ns, key) in [("guest", GUEST_KEY), ("whisk.system", SYSTEM_KEY)] {
        if store.namespace_by_name(ns).await?.is_none() {
            let name = EntityName::namespace(ns).expect("well-known namespace names are valid");
            let key = AuthKey::parse(key).expect("well-known keys are valid");
            store.create_namespace(ns, &name, &key).await?;
            out.created_namespaces.push(ns.to_owned());
        }
    }
    let system = EntityName::namespace("whisk.system").expect("valid");
    for (pkg, description) in [
        ("utils", "Building blocks that format and assemble data"),
        (
            "samples",
            "A suite of simple actions to help you get started with OpenWhisk",
        ),
        ("alarms", "Alarms and periodic utility"),
    ] {
        let name = EntityName::new(pkg).expect("valid");
        if store
            .get(&format!("whisk.system/{pkg}"), false)
            .await?
            .is_some()
        {
            continue;
        }
        out.installed_catalog = true;
        let mut annotations = Parameters::new();
        annotations.set("description", Value::from(description));
        let package = Package {
            namespace: EntityPath::root(system.clone()),
            name: name.clone(),
            binding: None,
            parameters: Parameters::new(),
            version: SemVer::INITIAL,
            publish: true,
            annotations,
            updated: now_millis(),
        };
        store.put(&Entity::Package(package), None).await?;
        for a in CATALOG.iter().filter(|a| a.package == pkg) {
            let mut annotations = Parameters::new();
            annotations.set("description", Value::from(a.description));
            let params: Vec<Value> = a
                .params
                .iter()
                .map(|p| json!({"name": p, "required": false}))
                .collect();
            annotations.set("parameters", Value::Array(params));
            annotations.set("provide-api-key", Value::Bool(false));
            if a.package == "alarms" {
                annotations.set("feed", Value::Bool(true));
            }
            annotations.set("exec", Value::from("nodejs:20"));
            let action = Action {
                namespace: EntityPath::in_package(system.clone(), name.clone()),
                name: EntityName::new(a.name).expect("valid"),
                exec: Exec::Code {
                    kind: "nodejs:20".into(),
                    code: a.code.to_owned(),
                    binary: false,
                    main: None,
                },
                parameters: Parameters::new(),
                limits: limits.default_action_limits(),
                version: SemVer::INITIAL,
                publish: false,
                annotations,
                updated: now_millis(),
            };
            store.put(&Entity::Action(action), None).await?;
        }
    }
    Ok(out)
}
