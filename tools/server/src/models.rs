//! Models the server knows: table, writable fields with Laravel-style validation rules, soft
//! deletes, and an optional per-client scope.
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The short model name clients send (`Task`).
    pub name: String,
    /// Table name; defaults to the snake_case plural of the name.
    #[serde(default)]
    pub table: Option<String>,
    /// Writable fields and their rules: `{"title": "required|max:255", "done": "boolean"}`.
    pub fields: BTreeMap<String, String>,
    /// Deleted rows keep their row with `deleted_at` set (otherwise removed, with a tombstone
    /// kept so pulls still report the delete).
    #[serde(default)]
    pub soft_deletes: bool,
    /// Column holding the owning client id: each client sees and changes only its own rows.
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Required,
    Nullable,
    Max(f64),
    Integer,
    Numeric,
    Boolean,
    String,
    /// Stored as JSON text, returned as JSON (Laravel's `array` cast).
    Array,
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub rules: Vec<Rule>,
}

impl Field {
    pub fn has(&self, rule: &Rule) -> bool {
        self.rules.contains(rule)
    }
}

#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub table: String,
    /// In the order of the config (a BTreeMap sorts them by name, which is stable).
    pub fields: Vec<Field>,
    pub soft_deletes: bool,
    pub scope: Option<String>,
}

const RESERVED: &[&str] = &[
    "id",
    "tether_id",
    "created_at",
    "updated_at",
    "deleted_at",
    "updated_us",
    "deleted_us",
    "changed_us",
];

impl Model {
    pub fn from_config(config: ModelConfig) -> Result<Model, String> {
        let name = config.name.trim().to_string();
        if name.is_empty() {
            return Err("a model needs a name".into());
        }
        let table = config.table.unwrap_or_else(|| default_table(&name));
        let mut fields = Vec::new();
        for (field, rules) in config.fields {
            if RESERVED.contains(&field.as_str()) || Some(&field) == config.scope.as_ref() {
                return Err(format!(
                    "model {name}: field {field:?} is managed by the server and cannot be writable"
                ));
            }
            let rules =
                parse_rules(&rules).map_err(|e| format!("model {name}, field {field}: {e}"))?;
            fields.push(Field { name: field, rules });
        }
        Ok(Model {
            name,
            table,
            fields,
            soft_deletes: config.soft_deletes,
            scope: config.scope,
        })
    }
}

/// `Task` → `tasks`, `OrderItem` → `order_items`, `Category` → `categories`.
fn default_table(model: &str) -> String {
    let mut snake = String::new();
    for (i, c) in model.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.extend(c.to_lowercase());
    }
    if let Some(stem) = snake
        .strip_suffix('y')
        .filter(|s| !s.ends_with(['a', 'e', 'i', 'o', 'u']))
    {
        format!("{stem}ies")
    } else if snake.ends_with('s')
        || snake.ends_with('x')
        || snake.ends_with("ch")
        || snake.ends_with("sh")
    {
        format!("{snake}es")
    } else {
        format!("{snake}s")
    }
}

fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    text.split('|')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|rule| match rule.split_once(':') {
            Some(("max", n)) => n.trim().parse().map(Rule::Max).map_err(|_| format!("max needs a number, got {n:?}")),
            None if rule == "required" => Ok(Rule::Required),
            None if rule == "nullable" => Ok(Rule::Nullable),
            None if rule == "integer" => Ok(Rule::Integer),
            None if rule == "numeric" => Ok(Rule::Numeric),
            None if rule == "boolean" => Ok(Rule::Boolean),
            None if rule == "string" => Ok(Rule::String),
            None if rule == "array" => Ok(Rule::Array),
            _ => Err(format!("unknown rule {rule:?} (known: required, nullable, max:N, integer, numeric, boolean, string, array)")),
        })
        .collect()
}

/// Laravel's attribute name in messages: `due_date` → `due date`.
fn attribute(field: &str) -> String {
    field.replace('_', " ")
}

fn is_integer(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        Value::String(s) => s.trim().parse::<i64>().is_ok(),
        _ => false,
    }
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn is_boolean(value: &Value) -> bool {
    matches!(value, Value::Bool(_))
        || matches!(value.as_i64(), Some(0 | 1))
        || matches!(value.as_str(), Some("0" | "1"))
}

/// Laravel-style validation of the writable fields in `payload`; `Err` holds field → messages.
pub fn validate(model: &Model, payload: &Map<String, Value>) -> Result<(), Map<String, Value>> {
    let mut messages = Map::new();
    for field in &model.fields {
        let name = attribute(&field.name);
        let value = payload.get(&field.name);
        let present = match value {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        let mut errors: Vec<String> = Vec::new();
        if field.has(&Rule::Required) && !present {
            errors.push(format!("The {name} field is required."));
        }
        if let (true, Some(value)) = (present, value) {
            if field.has(&Rule::Integer) && !is_integer(value) {
                errors.push(format!("The {name} must be an integer."));
            }
            if field.has(&Rule::Numeric) && as_number(value).is_none() {
                errors.push(format!("The {name} must be a number."));
            }
            if field.has(&Rule::Boolean) && !is_boolean(value) {
                errors.push(format!("The {name} field must be true or false."));
            }
            if field.has(&Rule::String) && !value.is_string() {
                errors.push(format!("The {name} must be a string."));
            }
            if field.has(&Rule::Array) && !value.is_array() && !value.is_object() {
                errors.push(format!("The {name} must be an array."));
            }
            for rule in &field.rules {
                let Rule::Max(max) = rule else { continue };
                let numeric = field.has(&Rule::Integer) || field.has(&Rule::Numeric);
                match value {
                    Value::String(s) if !numeric && s.chars().count() as f64 > *max => errors.push(
                        format!("The {name} may not be greater than {max} characters."),
                    ),
                    Value::Array(a) if a.len() as f64 > *max => {
                        errors.push(format!("The {name} may not have more than {max} items."))
                    }
                    _ if numeric && as_number(value).is_some_and(|n| n > *max) => {
                        errors.push(format!("The {name} may not be greater than {max}."))
                    }
                    _ => {}
                }
            }
        }
        if !errors.is_empty() {
            messages.insert(
                field.name.clone(),
                errors.into_iter().map(Value::String).collect(),
            );
        }
    }
    if messages.is_empty() {
        Ok(())
    } else {
        Err(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task() -> Model {
        Model::from_config(
            serde_json::from_value(json!({"name": "Task", "fields": {"title": "required|max:10", "done": "boolean", "priority": "integer|max:5"}}))
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn laravel_messages() {
        let model = task();
        assert_eq!(model.table, "tasks");
        let err = validate(
            &model,
            json!({"title": "a very long title", "done": "yes", "priority": 9})
                .as_object()
                .unwrap(),
        )
        .unwrap_err();
        assert_eq!(
            err["title"],
            json!(["The title may not be greater than 10 characters."])
        );
        assert_eq!(
            err["done"],
            json!(["The done field must be true or false."])
        );
        assert_eq!(
            err["priority"],
            json!(["The priority may not be greater than 5."])
        );
        let err = validate(&model, json!({}).as_object().unwrap()).unwrap_err();
        assert_eq!(err["title"], json!(["The title field is required."]));
        assert!(validate(
            &model,
            json!({"title": "ok", "done": true, "priority": 2})
                .as_object()
                .unwrap()
        )
        .is_ok());
    }

    #[test]
    fn default_tables() {
        assert_eq!(default_table("OrderItem"), "order_items");
        assert_eq!(default_table("Category"), "categories");
        assert_eq!(default_table("Box"), "boxes");
    }
}
