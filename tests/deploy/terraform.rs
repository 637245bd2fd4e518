//! `deploy/terraform/`: the module and its example parse as HCL, every
//! reference names something declared, the example gives the module what it
//! requires, and — evaluating the module's expressions with the example's
//! inputs — the task definition runs the image on real settings, the ALB
//! checks readiness, and ElastiCache runs in cluster mode, over TLS with
//! an AUTH token that reaches the tasks only as a secret.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::expr::{Expression, ObjectKey, TraversalOperator};
use hcl::template::{Element, Template};
use hcl::{Block, Body};
use ratelimiter::settings::{Backend, RedisMode};
use serde_json::Value;

use crate::common::{
    assert_liveness_path, assert_readiness_path, health_command_target, read, repo, seconds, settings_from_env, uid,
};
use crate::docker::image_user;

const MODULE: &str = "deploy/terraform";
const EXAMPLE: &str = "deploy/terraform/examples/basic";

/// Values for the example's variables that have no default (what a user
/// passes with `-var`).
const EXAMPLE_INPUTS: &[(&str, &str)] = &[
    ("vpc_id", r#""vpc-0123456789abcdef0""#),
    (
        "private_subnet_ids",
        r#"["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]"#,
    ),
    (
        "image",
        r#""123456789012.dkr.ecr.eu-west-1.amazonaws.com/ratelimiter:0.1.0""#,
    ),
];

/// What ECS would read from the admin token secret.
const ADMIN_TOKEN: &str = "terraform-admin-token-0123456789";

/// What ECS would read from the Redis AUTH token secret.
const REDIS_AUTH_TOKEN: &str = "terraform-redis-auth-token-0123456789";

/// The stand-in ARN of resource `kind.name` (see [`declare_resources`]).
fn arn(kind: &str, name: &str) -> String {
    format!("arn:aws:{kind}:eu-west-1:123456789012:{name}")
}

/// The configuration endpoint ElastiCache would create.
const REDIS_ENDPOINT: &str = "clustercfg.ratelimiter-redis.abcdef.euw1.cache.amazonaws.com";

/// The top-level blocks of every `.tf` file of a directory.
struct Module {
    blocks: Vec<(String, Block)>,
}

impl Module {
    #[track_caller]
    fn load(dir: &str) -> Module {
        let mut files: Vec<String> = std::fs::read_dir(repo(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|f| f.ends_with(".tf"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{dir}: no .tf files");
        let mut blocks = Vec::new();
        for file in files {
            let path = format!("{dir}/{file}");
            let body: Body = hcl::parse(&read(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(body.attributes().next().is_none(), "{path}: top-level attributes");
            blocks.extend(body.into_blocks().map(|b| (path.clone(), b)));
        }
        Module { blocks }
    }

    /// Blocks `kind "label0" "label1" {}`.
    fn named(&self, kind: &str) -> impl Iterator<Item = (Vec<String>, &Block)> + '_ {
        let kind = kind.to_owned();
        self.blocks
            .iter()
            .filter(move |(_, b)| b.identifier.as_str() == kind)
            .map(|(_, b)| (b.labels.iter().map(|l| l.as_str().to_owned()).collect(), b))
    }

    fn variables(&self) -> BTreeMap<String, Option<Expression>> {
        self.named("variable")
            .map(|(labels, b)| (labels[0].clone(), attr(&b.body, "default").cloned()))
            .collect()
    }

    fn locals(&self) -> BTreeMap<String, Expression> {
        self.named("locals")
            .flat_map(|(_, b)| {
                b.body
                    .attributes()
                    .map(|a| (a.key.to_string(), a.expr.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn labelled(&self, kind: &str) -> BTreeSet<(String, String)> {
        self.named(kind).map(|(l, _)| (l[0].clone(), l[1].clone())).collect()
    }

    #[track_caller]
    fn resource(&self, kind: &str, name: &str) -> &Block {
        self.named("resource")
            .find(|(l, _)| l[0] == kind && l[1] == name)
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("no resource {kind}.{name}"))
    }

    fn outputs(&self) -> BTreeSet<String> {
        self.named("output").map(|(l, _)| l[0].clone()).collect()
    }
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key.as_str() == key).map(|a| &a.expr)
}

#[track_caller]
fn nested<'a>(body: &'a Body, kind: &str) -> &'a Body {
    &body
        .blocks()
        .find(|b| b.identifier.as_str() == kind)
        .unwrap_or_else(|| panic!("no {kind} block"))
        .body
}

/// Every reference (`root.attr.attr`) in `expr`, including inside string
/// templates, as its first three names.
fn references(expr: &Expression, out: &mut Vec<Vec<String>>) {
    match expr {
        Expression::Variable(v) => out.push(vec![v.as_str().to_owned()]),
        Expression::Traversal(t) => {
            if let Expression::Variable(root) = &t.expr {
                let mut path = vec![root.as_str().to_owned()];
                for op in &t.operators {
                    match op {
                        TraversalOperator::GetAttr(name) if path.len() < 3 => path.push(name.to_string()),
                        TraversalOperator::Index(index) => references(index, out),
                        _ => {}
                    }
                }
                out.push(path);
            } else {
                references(&t.expr, out);
            }
        }
        Expression::Array(items) => items.iter().for_each(|e| references(e, out)),
        Expression::Object(object) => {
            for (key, value) in object {
                if let ObjectKey::Expression(key) = key {
                    references(key, out);
                }
                references(value, out);
            }
        }
        Expression::TemplateExpr(template) => {
            let template = Template::from_expr(template).expect("a valid template");
            for element in template.elements() {
                if let Element::Interpolation(i) = element {
                    references(&i.expr, out);
                }
            }
        }
        Expression::FuncCall(call) => call.args.iter().for_each(|e| references(e, out)),
        Expression::Parenthesis(inner) => references(inner, out),
        Expression::Conditional(c) => [&c.cond_expr, &c.true_expr, &c.false_expr]
            .into_iter()
            .for_each(|e| references(e, out)),
        Expression::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Unary(u) => references(&u.expr, out),
            hcl::expr::Operation::Binary(b) => {
                references(&b.lhs_expr, out);
                references(&b.rhs_expr, out);
            }
        },
        Expression::ForExpr(f) => {
            let mut inner = Vec::new();
            references(&f.collection_expr, out);
            for e in [Some(&f.value_expr), f.key_expr.as_ref(), f.cond_expr.as_ref()]
                .into_iter()
                .flatten()
            {
                references(e, &mut inner);
            }
            let bound: Vec<&str> = [Some(f.value_var.as_str()), f.key_var.as_ref().map(|k| k.as_str())]
                .into_iter()
                .flatten()
                .collect();
            out.extend(inner.into_iter().filter(|r| !bound.contains(&r[0].as_str())));
        }
        _ => {}
    }
}

/// Every reference in every attribute of `body`, nested blocks included.
fn body_references(body: &Body, out: &mut Vec<Vec<String>>) {
    for attribute in body.attributes() {
        references(&attribute.expr, out);
    }
    for block in body.blocks() {
        body_references(&block.body, out);
    }
}

/// Asserts that every `var.`, `local.`, `data.`, resource and `module.`
/// reference of `module` is declared (`modules` gives the outputs of the
/// modules it calls).
#[track_caller]
fn assert_references_declared(dir: &str, module: &Module, modules: &BTreeMap<String, BTreeSet<String>>) {
    let variables = module.variables();
    let locals = module.locals();
    let resources = module.labelled("resource");
    let data = module.labelled("data");
    let mut refs = Vec::new();
    for (_, block) in &module.blocks {
        body_references(&block.body, &mut refs);
    }
    assert!(refs.len() > 10, "{dir}: found only {} references", refs.len());
    for r in refs {
        let at = |i: usize| r.get(i).cloned().unwrap_or_default();
        let ok = match r[0].as_str() {
            "var" => variables.contains_key(&at(1)),
            "local" => locals.contains_key(&at(1)),
            "data" => data.contains(&(at(1), at(2))),
            "module" => modules.get(&at(1)).is_some_and(|outputs| outputs.contains(&at(2))),
            root if root.starts_with("aws_") || root.starts_with("random_") => resources.contains(&(at(0), at(1))),
            _ => true,
        };
        assert!(ok, "{dir}: {} is not declared", r.join("."));
    }
}

/// A context in which `module`'s expressions evaluate: its variables
/// (`inputs` over the defaults), its locals, stand-ins for the attributes
/// AWS computes, and the functions the module uses.
fn context(module: &Module, inputs: &BTreeMap<String, hcl::Value>) -> Context<'static> {
    let mut ctx = Context::new();
    ctx.declare_func(
        "jsonencode",
        FuncDef::new(
            |args: FuncArgs| {
                serde_json::to_string(&args[0])
                    .map(hcl::Value::from)
                    .map_err(|e| e.to_string())
            },
            [ParamType::Any],
        ),
    );
    ctx.declare_func(
        "tostring",
        FuncDef::new(
            |args: FuncArgs| match &args[0] {
                hcl::Value::String(s) => Ok(hcl::Value::from(s.clone())),
                hcl::Value::Number(n) => Ok(hcl::Value::from(n.to_string())),
                hcl::Value::Bool(b) => Ok(hcl::Value::from(b.to_string())),
                other => Err(format!("tostring({other:?})")),
            },
            [ParamType::Any],
        ),
    );
    ctx.declare_func(
        "merge",
        FuncDef::builder()
            .variadic_param(ParamType::object_of(ParamType::Any))
            .build(|args: FuncArgs| {
                let mut merged = hcl::Map::new();
                for arg in args.iter() {
                    merged.extend(arg.as_object().expect("objects").clone());
                }
                Ok(hcl::Value::Object(merged))
            }),
    );

    let mut vars = hcl::Map::new();
    for (name, default) in module.variables() {
        let value = match (inputs.get(&name), default) {
            (Some(v), _) => v.clone(),
            (None, Some(default)) => default
                .evaluate(&ctx)
                .unwrap_or_else(|e| panic!("var.{name} default: {e}")),
            (None, None) => panic!("variable {name} has no default and no input"),
        };
        vars.insert(name, value);
    }
    ctx.declare_var("var", hcl::Value::Object(vars));

    let mut data = hcl::Map::<String, hcl::Value>::new();
    for (kind, name) in module.labelled("data") {
        let attrs = hcl::value!({ name = "eu-west-1", json = "{}" });
        let entry = data.entry(kind).or_insert_with(|| hcl::Value::Object(hcl::Map::new()));
        entry.as_object_mut().unwrap().insert(name, attrs);
    }
    ctx.declare_var("data", hcl::Value::Object(data));

    // Resources' computed attributes and locals may use each other:
    // evaluate both until nothing more becomes known.
    let mut known = hcl::Map::new();
    loop {
        declare_resources(module, &mut ctx);
        let mut errors = Vec::new();
        let before = known.len();
        for (name, expr) in module.locals() {
            match expr.evaluate(&ctx) {
                Ok(value) => {
                    known.insert(name, value);
                }
                Err(e) => errors.push(format!("local.{name}: {e}")),
            }
        }
        ctx.declare_var("local", hcl::Value::Object(known.clone()));
        if errors.is_empty() && known.len() == before {
            break;
        }
        assert!(known.len() > before, "locals that do not evaluate: {errors:?}");
    }
    ctx
}

/// Declares every resource of `module` with the attributes the module
/// reads: those AWS computes (stand-ins) and those set to something that
/// evaluates in `ctx` so far.
fn declare_resources(module: &Module, ctx: &mut Context<'static>) {
    let mut resources = BTreeMap::<String, hcl::Map<String, hcl::Value>>::new();
    for (labels, block) in module.named("resource") {
        let (kind, name) = (&labels[0], &labels[1]);
        let mut attrs = hcl::Map::new();
        attrs.insert("id".into(), hcl::Value::from(format!("{kind}-{name}")));
        attrs.insert("arn".into(), arn(kind, name).into());
        attrs.insert("dns_name".into(), format!("{name}.eu-west-1.elb.amazonaws.com").into());
        attrs.insert("zone_id".into(), "Z0000000000000".into());
        attrs.insert("configuration_endpoint_address".into(), REDIS_ENDPOINT.into());
        attrs.insert("result".into(), ADMIN_TOKEN.into());
        for key in ["name", "port", "resource_id", "service_namespace", "scalable_dimension"] {
            if let Some(value) = attr(&block.body, key).and_then(|e| e.evaluate(ctx).ok()) {
                attrs.insert(key.into(), value);
            }
        }
        resources
            .entry(kind.clone())
            .or_default()
            .insert(name.clone(), hcl::Value::Object(attrs));
    }
    for (kind, objects) in resources {
        ctx.declare_var(kind, hcl::Value::Object(objects));
    }
}

#[track_caller]
fn eval(ctx: &Context, expr: Option<&Expression>, what: &str) -> Value {
    let expr = expr.unwrap_or_else(|| panic!("{what} is not set"));
    let value = expr.evaluate(ctx).unwrap_or_else(|e| panic!("{what}: {e}"));
    serde_json::to_value(value).unwrap()
}

/// The module's inputs, as the example passes them.
fn example_inputs() -> BTreeMap<String, hcl::Value> {
    let example = Module::load(EXAMPLE);
    let inputs: BTreeMap<String, hcl::Value> = EXAMPLE_INPUTS
        .iter()
        .map(|(name, hcl_text)| {
            let expr: Expression = hcl::from_str::<Body>(&format!("v = {hcl_text}"))
                .map(|b| attr(&b, "v").unwrap().clone())
                .unwrap();
            (name.to_string(), expr.evaluate(&Context::new()).unwrap())
        })
        .collect();
    let ctx = context(&example, &inputs);
    let (_, call) = example.named("module").next().expect("the example calls the module");
    call.body
        .attributes()
        .filter(|a| a.key.as_str() != "source")
        .map(|a| {
            let value = a
                .expr
                .evaluate(&ctx)
                .unwrap_or_else(|e| panic!("module input {}: {e}", a.key));
            (a.key.to_string(), value)
        })
        .collect()
}

#[test]
fn the_module_and_example_parse_and_reference_only_what_they_declare() {
    let module = Module::load(MODULE);
    assert_references_declared(MODULE, &module, &BTreeMap::new());

    let example = Module::load(EXAMPLE);
    let calls: Vec<_> = example.named("module").collect();
    assert_eq!(calls.len(), 1);
    let (labels, call) = &calls[0];
    let source = eval(&Context::new(), attr(&call.body, "source"), "source");
    let source = repo(EXAMPLE).join(source.as_str().unwrap());
    assert_eq!(
        source.canonicalize().unwrap(),
        repo(MODULE).canonicalize().unwrap(),
        "the example calls another module"
    );
    let modules = BTreeMap::from([(labels[0].clone(), module.outputs())]);
    assert_references_declared(EXAMPLE, &example, &modules);

    let variables = module.variables();
    let given: BTreeSet<String> = call
        .body
        .attributes()
        .map(|a| a.key.to_string())
        .filter(|k| k != "source")
        .collect();
    for name in &given {
        assert!(
            variables.contains_key(name),
            "the example passes {name}, which the module does not declare"
        );
    }
    for (name, default) in &variables {
        assert!(
            default.is_some() || given.contains(name),
            "the example does not pass the required {name}"
        );
    }
}

#[test]
fn the_aws_provider_is_pinned_to_version_5() {
    let module = Module::load(MODULE);
    let (_, terraform) = module.named("terraform").next().expect("a terraform block");
    let providers = nested(&terraform.body, "required_providers");
    let aws = eval(&Context::new(), attr(providers, "aws"), "required_providers.aws");
    assert_eq!(aws["source"], "hashicorp/aws");
    assert!(
        aws["version"].as_str().unwrap().starts_with("~> 5"),
        "{}",
        aws["version"]
    );
}

#[tokio::test]
async fn the_task_definition_runs_the_image_on_real_settings() {
    let module = Module::load(MODULE);
    let ctx = context(&module, &example_inputs());
    let task = module.resource("aws_ecs_task_definition", "this");
    let definitions = eval(&ctx, attr(&task.body, "container_definitions"), "container_definitions");
    let definitions: Value = serde_json::from_str(definitions.as_str().expect("JSON text")).unwrap();
    let container = &definitions[0];

    let mut env: BTreeMap<String, String> = container["environment"]
        .as_array()
        .expect("environment")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().expect("string values").to_owned(),
            )
        })
        .collect();
    // Each secret resolved by where ECS reads it: the example's admin
    // token secret, the module's Redis AUTH token secret.
    let secrets = BTreeMap::from([
        (arn("aws_secretsmanager_secret", "admin_token"), ADMIN_TOKEN),
        (arn("aws_secretsmanager_secret", "redis_auth"), REDIS_AUTH_TOKEN),
    ]);
    for secret in container["secrets"].as_array().expect("secrets") {
        let name = secret["name"].as_str().unwrap();
        let from = secret["valueFrom"].as_str().unwrap();
        let value = secrets
            .get(from)
            .unwrap_or_else(|| panic!("{name} comes from {from}, not a secret the test knows"));
        env.insert(name.to_owned(), (*value).to_owned());
    }
    assert!(env.keys().all(|k| k.starts_with("RATELIMITER__")), "{env:?}");
    // The module mounts no file: the image's own configuration applies.
    let settings = settings_from_env(
        "the ECS task definition",
        Some(Path::new(&repo("config/ratelimiter.toml"))),
        &env,
    );
    assert_eq!(settings.store.backend, Backend::Redis);
    assert_eq!(settings.store.redis.mode, RedisMode::Cluster);
    assert_eq!(settings.store.redis.nodes, [format!("rediss://{REDIS_ENDPOINT}:6379")]);
    assert_eq!(
        settings.store.redis.password.as_ref().map(|p| p.expose()),
        Some(REDIS_AUTH_TOKEN),
        "the Redis AUTH token does not reach store.redis.password"
    );
    assert_eq!(settings.admin.token.as_ref().map(|t| t.expose()), Some(ADMIN_TOKEN));
    assert_eq!(settings.log.format, ratelimiter::settings::LogFormat::Json);

    let port = settings.server.listen.port();
    assert!(settings.server.listen.ip().is_unspecified());
    assert_eq!(container["portMappings"][0]["containerPort"], port);
    let command: Vec<&str> = container["healthCheck"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    let (check_port, path) = health_command_target(&command);
    assert_eq!(check_port, port);
    assert_liveness_path("ECS container healthCheck", &path).await;

    assert_eq!(uid(container["user"].as_str().expect("user")), uid(&image_user()));
    assert_eq!(container["readonlyRootFilesystem"], true);
    assert_eq!(container["logConfiguration"]["logDriver"], "awslogs");
    let stop = container["stopTimeout"].as_f64().expect("stopTimeout");
    let needed = settings.server.drain_grace.0.as_secs_f64() + settings.server.shutdown_timeout.0.as_secs_f64();
    assert!(
        stop > needed && stop <= 120.0,
        "stopTimeout {stop}s: drain + shutdown take {needed}s; Fargate allows 120s"
    );

    let lb = module.resource("aws_lb", "this");
    let idle = eval(&ctx, attr(&lb.body, "idle_timeout"), "idle_timeout")
        .as_f64()
        .unwrap();
    let read_timeout = settings.server.read_timeout.0.as_secs_f64();
    assert!(
        read_timeout > idle,
        "server.read_timeout {read_timeout}s ≤ ALB idle_timeout {idle}s: tasks would close connections the ALB reuses"
    );
    assert!(seconds(&env["RATELIMITER__SERVER__DRAIN_GRACE"]) > 0.0);
}

#[tokio::test]
async fn the_alb_checks_readiness_and_redis_runs_in_cluster_mode() {
    let module = Module::load(MODULE);
    let ctx = context(&module, &example_inputs());

    let group = module.resource("aws_lb_target_group", "this");
    let check = nested(&group.body, "health_check");
    let path = eval(&ctx, attr(check, "path"), "health_check.path");
    assert_readiness_path("ALB target group health check", path.as_str().unwrap()).await;
    assert_eq!(eval(&ctx, attr(check, "matcher"), "matcher"), "200");
    assert_eq!(
        eval(&ctx, attr(&group.body, "target_type"), "target_type"),
        "ip",
        "Fargate tasks are IP targets"
    );
    let container_port = eval(&ctx, attr(&group.body, "port"), "port");
    let service = module.resource("aws_ecs_service", "this");
    let lb = nested(&service.body, "load_balancer");
    assert_eq!(eval(&ctx, attr(lb, "container_port"), "container_port"), container_port);

    let redis = module.resource("aws_elasticache_replication_group", "this");
    let num = |key: &str| eval(&ctx, attr(&redis.body, key), key).as_f64().unwrap();
    assert!(num("num_node_groups") >= 2.0, "not a Redis Cluster");
    assert!(
        num("replicas_per_node_group") >= 1.0,
        "masters without replicas cannot fail over"
    );
    assert_eq!(
        eval(
            &ctx,
            attr(&redis.body, "automatic_failover_enabled"),
            "automatic_failover_enabled"
        ),
        true
    );
    assert_eq!(eval(&ctx, attr(&redis.body, "engine"), "engine"), "redis");
    let parameters = eval(&ctx, attr(&redis.body, "parameter_group_name"), "parameter_group_name");
    assert!(
        parameters.as_str().unwrap().ends_with(".cluster.on"),
        "{parameters}: cluster mode is off"
    );
    for key in ["transit_encryption_enabled", "at_rest_encryption_enabled"] {
        assert_eq!(eval(&ctx, attr(&redis.body, key), key), true, "{key}");
    }

    let rule = module.resource("aws_vpc_security_group_ingress_rule", "redis_from_tasks");
    assert_eq!(
        eval(&ctx, attr(&rule.body, "from_port"), "from_port").as_f64(),
        Some(num("port"))
    );

    let target = module.resource("aws_appautoscaling_target", "this");
    let (min, max) = (
        eval(&ctx, attr(&target.body, "min_capacity"), "min_capacity")
            .as_f64()
            .unwrap(),
        eval(&ctx, attr(&target.body, "max_capacity"), "max_capacity")
            .as_f64()
            .unwrap(),
    );
    assert!(min >= 2.0 && max > min, "autoscaling between {min} and {max}");
    let policy = module.resource("aws_appautoscaling_policy", "cpu");
    let tracking = nested(&policy.body, "target_tracking_scaling_policy_configuration");
    let metric = nested(tracking, "predefined_metric_specification");
    assert_eq!(
        eval(&ctx, attr(metric, "predefined_metric_type"), "predefined_metric_type"),
        "ECSServiceAverageCPUUtilization"
    );
}

/// The references of one attribute, as `a.b.c` strings.
#[track_caller]
fn attr_references(body: &Body, key: &str) -> BTreeSet<String> {
    let mut refs = Vec::new();
    references(attr(body, key).unwrap_or_else(|| panic!("{key} is not set")), &mut refs);
    refs.into_iter().map(|r| r.join(".")).collect()
}

#[track_caller]
fn assert_refers(body: &Body, key: &str, to: &str) {
    let refs = attr_references(body, key);
    assert!(refs.contains(to), "{key} refers to {refs:?}, not {to}");
}

/// The Redis AUTH token is one random value: ElastiCache's, the one the
/// secret stores (under the module's KMS key), the one ECS hands to the
/// tasks; the execution role may read and decrypt that secret, and the
/// key also encrypts the nodes' data and the logs.
#[test]
fn the_redis_auth_token_goes_from_one_secret_to_elasticache_and_the_tasks() {
    let module = Module::load(MODULE);
    let token = "random_password.redis_auth.result";
    let key = "aws_kms_key.this.arn";
    let redis = module.resource("aws_elasticache_replication_group", "this");
    assert_refers(&redis.body, "auth_token", token);
    assert_refers(&redis.body, "kms_key_id", key);
    let version = module.resource("aws_secretsmanager_secret_version", "redis_auth");
    assert_refers(&version.body, "secret_string", token);
    assert_refers(&version.body, "secret_id", "aws_secretsmanager_secret.redis_auth.id");
    let secret = module.resource("aws_secretsmanager_secret", "redis_auth");
    assert_refers(&secret.body, "kms_key_id", key);
    let logs = module.resource("aws_cloudwatch_log_group", "this");
    assert_refers(&logs.body, "kms_key_id", key);
    let rotation = module.resource("aws_kms_key", "this");
    assert_eq!(
        eval(
            &Context::new(),
            attr(&rotation.body, "enable_key_rotation"),
            "enable_key_rotation"
        ),
        true
    );

    let task = module.resource("aws_ecs_task_definition", "this");
    assert_refers(
        &task.body,
        "container_definitions",
        "aws_secretsmanager_secret.redis_auth.arn",
    );
    assert_refers(&task.body, "execution_role_arn", "aws_iam_role.execution.arn");

    let (_, policy) = module
        .named("data")
        .find(|(l, _)| l[0] == "aws_iam_policy_document" && l[1] == "read_secrets")
        .expect("data.aws_iam_policy_document.read_secrets");
    let statements: Vec<&Body> = policy
        .body
        .blocks()
        .filter(|b| b.identifier.as_str() == "statement")
        .map(|b| &b.body)
        .collect();
    let granting = |action: &str| -> BTreeSet<String> {
        statements
            .iter()
            .filter(|s| {
                let actions = eval(&Context::new(), attr(s, "actions"), "actions");
                actions.as_array().unwrap().iter().any(|a| a == action)
            })
            .flat_map(|s| attr_references(s, "resources"))
            .collect()
    };
    let read = granting("secretsmanager:GetSecretValue");
    for secret in ["aws_secretsmanager_secret.redis_auth.arn", "var.admin_token_secret_arn"] {
        assert!(
            read.contains(secret),
            "the execution role may not read {secret}: {read:?}"
        );
    }
    assert!(
        granting("kms:Decrypt").contains(key),
        "the execution role may not decrypt with the key"
    );
    let attached = module.resource("aws_iam_role_policy", "read_secrets");
    assert_refers(&attached.body, "role", "aws_iam_role.execution.id");
    assert_refers(&attached.body, "policy", "data.aws_iam_policy_document.read_secrets");
}
