//! Models the server knows: table, writable fields with Laravel-style validation rules, soft
//! deletes, and an optional per-client scope. Validation follows Laravel 12's validator: rules run
//! in the order written, messages are those of Laravel 12's `lang/en/validation.php`.
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The short model name clients send (`Task`).
    pub name: String,
    /// Table name; defaults to the snake_case plural of the name.
    #[serde(default)]
    pub table: Option<String>,
    /// Writable fields and their rules: `{"title": "required|max:255", "done": "boolean"}`, in
    /// the order written (Laravel validates, and lists messages, in the order of its rules).
    pub fields: FieldRules,
    /// Deleted rows keep their row with `deleted_at` set (otherwise removed, with a tombstone
    /// kept so pulls still report the delete).
    #[serde(default)]
    pub soft_deletes: bool,
    /// Column holding the owning client id: each client sees and changes only its own rows.
    #[serde(default)]
    pub scope: Option<String>,
}

/// Field → rules, in document order.
#[derive(Debug, Clone, Default)]
pub struct FieldRules(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for FieldRules {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = FieldRules;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of field name → rules")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldRules, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((field, rules)) = map.next_entry::<String, String>()? {
                    if out.iter().any(|(f, _)| *f == field) {
                        return Err(serde::de::Error::custom(format!(
                            "field {field:?} is listed twice"
                        )));
                    }
                    out.push((field, rules));
                }
                Ok(FieldRules(out))
            }
        }
        deserializer.deserialize_map(Ordered)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Required,
    Nullable,
    /// `max:N`: the text as written (Laravel puts it in the message verbatim) and its value.
    Max(String, f64),
    /// `min:N` (used for the request's `limit`; not offered to models).
    Min(String, f64),
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
    /// In the order of the config.
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
    "created_us",
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
        if let Some(scope) = &config.scope {
            if RESERVED.contains(&scope.as_str()) || scope.is_empty() {
                return Err(format!(
                    "model {name}: scope {scope:?} names a column the server manages"
                ));
            }
        }
        let mut fields = Vec::new();
        for (field, rules) in config.fields.0 {
            if RESERVED.contains(&field.as_str()) || Some(&field) == config.scope.as_ref() {
                return Err(format!(
                    "model {name}: field {field:?} is managed by the server and cannot be writable"
                ));
            }
            if field.is_empty() {
                return Err(format!("model {name}: a field needs a name"));
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

impl Model {
    /// Whether `name` is an attribute of the model's rows, as a pull returns them
    /// ([`crate::store::Store::payload`]): `id`, the sync key `tether_id`, the writable fields,
    /// the scope column, `created_at`, `updated_at`, and `deleted_at` with soft deletes.
    pub fn has_attribute(&self, name: &str) -> bool {
        matches!(name, "id" | "tether_id" | "created_at" | "updated_at")
            || (self.soft_deletes && name == "deleted_at")
            || self.scope.as_deref() == Some(name)
            || self.fields.iter().any(|f| f.name == name)
    }

    /// The keys of a create or update `payload` the server drops without a trace, sorted: those
    /// that are not attributes of the model ([`Model::has_attribute`]). Applying takes only the
    /// writable fields, compared exactly (`Title` is not `title`); the other attributes (the sync
    /// key, `id`, the timestamps, the scope) the server sets itself and sends back in every pull,
    /// and none of them can be made writable, so they are not reported.
    pub fn ignored_fields(&self, payload: &Map<String, Value>) -> Vec<String> {
        let mut ignored: Vec<String> = payload
            .keys()
            .filter(|key| !self.has_attribute(key))
            .cloned()
            .collect();
        ignored.sort();
        ignored
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
            Some(("max", n)) => {
                let n = n.trim();
                match n.parse::<f64>() {
                    Ok(v) if v.is_finite() => Ok(Rule::Max(n.to_string(), v)),
                    _ => Err(format!("max needs a number, got {n:?}")),
                }
            }
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

/// Laravel's displayable attribute name: `str_replace('_', ' ', Str::snake($attribute))`, so
/// `due_date` and `dueDate` both become `due date`.
pub fn attribute(field: &str) -> String {
    snake(field).replace('_', " ")
}

/// Laravel's `Str::snake`: a string of only lower-case ASCII letters is kept; otherwise each
/// word is capitalised, white space removed, `_` put before every upper-case letter but the first,
/// and everything lower-cased.
fn snake(value: &str) -> String {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_lowercase()) {
        return value.to_string();
    }
    let mut words = String::new();
    let mut word_start = true;
    for c in value.chars() {
        if word_start {
            words.push(c.to_ascii_uppercase());
        } else {
            words.push(c);
        }
        word_start = matches!(c, ' ' | '\t' | '\r' | '\n' | '\x0c' | '\x0b');
    }
    let mut out = String::new();
    for (i, c) in words.chars().filter(|c| !c.is_whitespace()).enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c);
    }
    out.to_lowercase()
}

/// PHP's `trim` characters.
fn php_trim(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\n', '\r', '\0', '\x0b'])
}

/// PHP's `filter_var($value, FILTER_VALIDATE_INT) !== false` for a decoded JSON value.
fn is_integer(value: &Value) -> bool {
    integer_value(value).is_some()
}

/// The integer PHP's `FILTER_VALIDATE_INT` reads from a JSON value (JSON integers beyond PHP's
/// 64-bit range arrive as floats in PHP, and are refused).
pub fn integer_value(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            // PHP writes an integral float without exponent below 1e15 ("5" for 5.0).
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => {
            let t = s.trim_matches([' ', '\t', '\n', '\r', '\x0b']);
            let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
            let canonical = digits == "0"
                || (!digits.is_empty()
                    && !digits.starts_with('0')
                    && digits.bytes().all(|b| b.is_ascii_digit()));
            if canonical {
                t.parse().ok()
            } else {
                None
            }
        }
        Value::Bool(true) => Some(1),
        _ => None,
    }
}

/// PHP's `is_numeric`, giving the number.
fn numeric_value(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            // Leading white space is allowed, and (PHP 8) trailing white space.
            let t = s.trim_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
            let body = t.strip_prefix(['+', '-']).unwrap_or(t);
            let (mantissa, exponent) = match body.find(['e', 'E']) {
                Some(i) => (&body[..i], Some(&body[i + 1..])),
                None => (body, None),
            };
            let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
            let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
            let mantissa_ok = digits(int)
                && digits(frac)
                && (!int.is_empty() || !frac.is_empty())
                && (mantissa.contains('.') || !int.is_empty());
            let exponent_ok = exponent.is_none_or(|e| {
                let e = e.strip_prefix(['+', '-']).unwrap_or(e);
                !e.is_empty() && digits(e)
            });
            if mantissa_ok && exponent_ok {
                t.parse().ok()
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Laravel's `boolean`: `true`, `false`, `0`, `1`, `"0"`, `"1"` (compared strictly).
fn is_boolean(value: &Value) -> bool {
    match value {
        Value::Bool(_) => true,
        Value::Number(n) => matches!(n.as_i64(), Some(0 | 1)),
        Value::String(s) => s == "0" || s == "1",
        _ => false,
    }
}

/// PHP's `mb_strlen` of a scalar converted to a string.
fn php_length(value: &Value) -> f64 {
    match value {
        Value::Null | Value::Bool(false) => 0.0,
        Value::Bool(true) => 1.0,
        Value::String(s) => s.chars().count() as f64,
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() < 1e15 => {
                (f as i64).to_string().len() as f64
            }
            _ => n.to_string().len() as f64,
        },
        Value::Array(a) => a.len() as f64,
        Value::Object(o) => o.len() as f64,
    }
}

/// Which of Laravel's size messages a field gets: `numeric`, `array` or `string`.
#[derive(Clone, Copy, PartialEq)]
enum SizeKind {
    Numeric,
    Array,
    String,
}

fn size_kind(rules: &[Rule]) -> SizeKind {
    if rules
        .iter()
        .any(|r| matches!(r, Rule::Integer | Rule::Numeric))
    {
        SizeKind::Numeric
    } else if rules.contains(&Rule::Array) {
        SizeKind::Array
    } else {
        SizeKind::String
    }
}

/// Laravel's `getSize`: the number itself for a numeric value under a numeric rule, the count of
/// an array, else the length of the text.
fn size(value: &Value, rules: &[Rule]) -> f64 {
    let numeric_rule = rules
        .iter()
        .any(|r| matches!(r, Rule::Integer | Rule::Numeric));
    match (numeric_rule, numeric_value(value)) {
        (true, Some(n)) => n,
        _ => php_length(value),
    }
}

fn passes(rule: &Rule, value: Option<&Value>, rules: &[Rule]) -> bool {
    let v = value.unwrap_or(&Value::Null);
    match rule {
        Rule::Required => match v {
            Value::Null => false,
            Value::String(s) => !php_trim(s).is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        },
        Rule::Nullable => true,
        Rule::Integer => is_integer(v),
        Rule::Numeric => numeric_value(v).is_some(),
        Rule::Boolean => is_boolean(v),
        Rule::String => v.is_string(),
        Rule::Array => v.is_array() || v.is_object(),
        Rule::Max(_, max) => size(v, rules) <= *max,
        Rule::Min(_, min) => size(v, rules) >= *min,
    }
}

fn message(rule: &Rule, name: &str, rules: &[Rule]) -> String {
    match rule {
        Rule::Required => format!("The {name} field is required."),
        Rule::Nullable => String::new(),
        Rule::Integer => format!("The {name} field must be an integer."),
        Rule::Numeric => format!("The {name} field must be a number."),
        Rule::Boolean => format!("The {name} field must be true or false."),
        Rule::String => format!("The {name} field must be a string."),
        Rule::Array => format!("The {name} field must be an array."),
        Rule::Max(max, _) => match size_kind(rules) {
            SizeKind::Numeric => format!("The {name} field must not be greater than {max}."),
            SizeKind::Array => format!("The {name} field must not have more than {max} items."),
            SizeKind::String => {
                format!("The {name} field must not be greater than {max} characters.")
            }
        },
        Rule::Min(min, _) => match size_kind(rules) {
            SizeKind::Numeric => format!("The {name} field must be at least {min}."),
            SizeKind::Array => format!("The {name} field must have at least {min} items."),
            SizeKind::String => format!("The {name} field must be at least {min} characters."),
        },
    }
}

/// Laravel's validation of one attribute: `value` is `None` when the key is absent. `name` is
/// the attribute as messages show it. Returns the messages of the failed rules, in rule order.
pub fn check(name: &str, value: Option<&Value>, rules: &[Rule]) -> Vec<String> {
    let nullable = rules.contains(&Rule::Nullable);
    let mut errors = Vec::new();
    for rule in rules {
        if *rule == Rule::Nullable {
            continue;
        }
        let implicit = *rule == Rule::Required;
        if !implicit {
            // Only implicit rules see a missing key, a blank string, or null under `nullable`.
            let skip = match value {
                None => true,
                Some(Value::String(s)) => php_trim(s).is_empty(),
                Some(Value::Null) => nullable,
                Some(_) => false,
            };
            if skip {
                continue;
            }
        }
        if !passes(rule, value, rules) {
            errors.push(message(rule, name, rules));
            if implicit {
                // A failed `required` ends the attribute's validation.
                break;
            }
        }
    }
    errors
}

/// Field → messages, in the order of the rules (Laravel's `errors()->messages()`).
pub type Messages = Vec<(String, Vec<String>)>;

pub fn messages_json(messages: &Messages) -> Value {
    Value::Object(
        messages
            .iter()
            .map(|(field, list)| (field.clone(), Value::from(list.clone())))
            .collect::<Map<String, Value>>(),
    )
}

/// Laravel-style validation of the writable fields in `payload`; `Err` holds field → messages.
pub fn validate(model: &Model, payload: &Map<String, Value>) -> Result<(), Messages> {
    let mut messages = Vec::new();
    for field in &model.fields {
        let errors = check(
            &attribute(&field.name),
            payload.get(&field.name),
            &field.rules,
        );
        if !errors.is_empty() {
            messages.push((field.name.clone(), errors));
        }
    }
    if messages.is_empty() {
        Ok(())
    } else {
        Err(messages)
    }
}

/// Laravel's `ValidationException::summarize`: the first message, and how many more there are.
pub fn summarize(messages: &Messages) -> String {
    let mut all = messages.iter().flat_map(|(_, list)| list.iter());
    let Some(first) = all.next() else {
        return "The given data was invalid.".to_string();
    };
    match all.count() {
        0 => first.clone(),
        1 => format!("{first} (and 1 more error)"),
        n => format!("{first} (and {n} more errors)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model(fields: Value) -> Model {
        Model::from_config(
            serde_json::from_value(json!({"name": "Task", "fields": fields})).unwrap(),
        )
        .unwrap()
    }

    fn errors(model: &Model, payload: Value) -> Value {
        match validate(model, payload.as_object().unwrap()) {
            Ok(()) => json!({}),
            Err(m) => messages_json(&m),
        }
    }

    #[test]
    fn laravel_12_messages() {
        let m = model(
            json!({"title": "required|max:10", "done": "boolean", "priority": "integer|max:5"}),
        );
        assert_eq!(m.table, "tasks");
        assert_eq!(
            errors(
                &m,
                json!({"title": "a very long title", "done": "yes", "priority": 9})
            ),
            json!({
                "title": ["The title field must not be greater than 10 characters."],
                "done": ["The done field must be true or false."],
                "priority": ["The priority field must not be greater than 5."],
            })
        );
        assert_eq!(
            errors(&m, json!({})),
            json!({"title": ["The title field is required."]})
        );
        assert_eq!(
            errors(&m, json!({"title": "ok", "done": true, "priority": 2})),
            json!({})
        );
    }

    #[test]
    fn rules_run_in_order_and_required_stops() {
        let m = model(json!({"n": "integer|max:3|numeric", "s": "required|string|max:2"}));
        assert_eq!(
            errors(&m, json!({"n": "abcd", "s": null})),
            json!({
                "n": ["The n field must be an integer.", "The n field must not be greater than 3.", "The n field must be a number."],
                "s": ["The s field is required."],
            })
        );
    }

    #[test]
    fn null_blank_and_missing() {
        let m = model(json!({"a": "integer", "b": "nullable|integer", "c": "string"}));
        assert_eq!(
            errors(&m, json!({"a": null, "b": null})),
            json!({"a": ["The a field must be an integer."]}),
            "null runs the rules unless nullable; a missing key does not"
        );
        assert_eq!(errors(&m, json!({"a": "  ", "c": ""})), json!({}));
    }

    #[test]
    fn php_integers_and_numbers() {
        for ok in [
            json!(5),
            json!("5"),
            json!(" -5 "),
            json!(5.0),
            json!(true),
            json!("0"),
        ] {
            assert!(is_integer(&ok), "{ok}");
        }
        for bad in [
            json!("05"),
            json!(5.5),
            json!("5.0"),
            json!(false),
            json!("x"),
            json!(1e20),
            json!(u64::MAX),
        ] {
            assert!(!is_integer(&bad), "{bad}");
        }
        for ok in [
            json!("1e3"),
            json!(".5"),
            json!("5."),
            json!(" 7 "),
            json!(-1.5),
        ] {
            assert!(numeric_value(&ok).is_some(), "{ok}");
        }
        for bad in [
            json!("inf"),
            json!("NaN"),
            json!("."),
            json!("1e"),
            json!(true),
            json!("0x1A"),
        ] {
            assert!(numeric_value(&bad).is_none(), "{bad}");
        }
        assert!(is_boolean(&json!(1)) && is_boolean(&json!("0")) && !is_boolean(&json!(1.0)));
    }

    #[test]
    fn attribute_names_as_laravel_shows_them() {
        assert_eq!(attribute("due_date"), "due date");
        assert_eq!(attribute("dueDate"), "due date");
        assert_eq!(attribute("title"), "title");
        assert_eq!(attribute("client_id"), "client id");
        assert_eq!(attribute("URL"), "u r l");
    }

    #[test]
    fn sizes_by_kind() {
        let m = model(json!({"tags": "array|max:1", "list": "max:1", "n": "numeric|max:1.5"}));
        assert_eq!(
            errors(&m, json!({"tags": [1, 2], "list": [1, 2], "n": "2"})),
            json!({
                "tags": ["The tags field must not have more than 1 items."],
                "list": ["The list field must not be greater than 1 characters."],
                "n": ["The n field must not be greater than 1.5."],
            })
        );
    }

    #[test]
    fn summaries() {
        let one = vec![("a".to_string(), vec!["A.".to_string()])];
        assert_eq!(summarize(&one), "A.");
        let two = vec![("a".to_string(), vec!["A.".to_string(), "B.".to_string()])];
        assert_eq!(summarize(&two), "A. (and 1 more error)");
        let three = vec![
            ("a".to_string(), vec!["A.".to_string()]),
            ("b".to_string(), vec!["B.".to_string(), "C.".to_string()]),
        ];
        assert_eq!(summarize(&three), "A. (and 2 more errors)");
    }

    #[test]
    fn fields_keep_their_order() {
        let config = r#"{"name": "Task", "fields": {"z": "", "a": "", "m": ""}}"#;
        let m = Model::from_config(serde_json::from_str(config).unwrap()).unwrap();
        let names: Vec<&str> = m.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["z", "a", "m"]);
    }

    #[test]
    fn ignored_fields_are_what_applying_drops() {
        let config = json!({"name": "Task", "fields": {"title": "", "done": ""}, "scope": "owner"});
        let m = Model::from_config(serde_json::from_value(config).unwrap()).unwrap();
        let payload = json!({
            "title": "t", "done": true, "tether_id": "x", "id": 1, "owner": "c",
            "created_at": "", "updated_at": "", "deleted_at": null,
            "size": 1, "Title": "t", "color": "red", "changed_us": 5,
        });
        assert_eq!(
            m.ignored_fields(payload.as_object().unwrap()),
            ["Title", "changed_us", "color", "deleted_at", "size"],
            "sorted; deleted_at is not an attribute without soft deletes"
        );
        let soft = model(json!({"title": ""}));
        let soft = Model {
            soft_deletes: true,
            ..soft
        };
        let payload = json!({"title": "t", "deleted_at": null, "tether_id": "x"});
        assert!(soft.ignored_fields(payload.as_object().unwrap()).is_empty());
    }

    #[test]
    fn default_tables() {
        assert_eq!(default_table("OrderItem"), "order_items");
        assert_eq!(default_table("Category"), "categories");
        assert_eq!(default_table("Box"), "boxes");
    }
}
