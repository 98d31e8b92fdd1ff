//! Laravel's default model name for a table: `Str::studly(Str::singular($table))`
//! (`tasks` → `Task`, `order_items` → `OrderItem`, `categories` → `Category`).

/// Words Laravel's pluralizer leaves alone.
const UNCOUNTABLE: &[&str] = &[
    "audio",
    "bison",
    "cattle",
    "chassis",
    "compensation",
    "coreopsis",
    "data",
    "deer",
    "education",
    "emoji",
    "equipment",
    "evidence",
    "feedback",
    "firmware",
    "fish",
    "furniture",
    "gold",
    "hardware",
    "information",
    "jedi",
    "kin",
    "knowledge",
    "love",
    "metadata",
    "money",
    "moose",
    "news",
    "nutrition",
    "offspring",
    "plankton",
    "pokemon",
    "police",
    "rain",
    "recommended",
    "related",
    "rice",
    "series",
    "sheep",
    "software",
    "species",
    "swine",
    "traffic",
    "wheat",
];

const IRREGULAR: &[(&str, &str)] = &[
    ("people", "person"),
    ("men", "man"),
    ("women", "woman"),
    ("children", "child"),
    ("teeth", "tooth"),
    ("feet", "foot"),
    ("mice", "mouse"),
    ("geese", "goose"),
    ("oxen", "ox"),
    ("leaves", "leaf"),
    ("lives", "life"),
    ("knives", "knife"),
    ("wives", "wife"),
    ("halves", "half"),
    ("selves", "self"),
    ("elves", "elf"),
    ("wolves", "wolf"),
    ("shelves", "shelf"),
    ("thieves", "thief"),
    ("loaves", "loaf"),
    ("criteria", "criterion"),
    ("phenomena", "phenomenon"),
    ("analyses", "analysis"),
    ("axes", "axis"),
    ("crises", "crisis"),
    ("theses", "thesis"),
    ("indices", "index"),
    ("matrices", "matrix"),
    ("vertices", "vertex"),
    ("quizzes", "quiz"),
    ("moves", "move"),
    ("movies", "movie"),
    ("cookies", "cookie"),
    ("shoes", "shoe"),
    ("databases", "database"),
    ("buses", "bus"),
    ("octopi", "octopus"),
    ("viri", "virus"),
    ("cacti", "cactus"),
    ("foci", "focus"),
    ("media", "medium"),
];

/// `(plural suffix, singular suffix)`, first match wins.
const SUFFIXES: &[(&str, &str)] = &[
    ("sses", "ss"),
    ("shes", "sh"),
    ("ches", "ch"),
    ("xes", "x"),
    ("zzes", "z"),
    ("uses", "us"),
    ("ies", "y"),
    ("oes", "o"),
    ("ss", "ss"),
    ("us", "us"),
    ("is", "is"),
    ("s", ""),
];

pub fn singular(word: &str) -> String {
    let lower = word.to_lowercase();
    if UNCOUNTABLE.contains(&lower.as_str()) {
        return word.to_string();
    }
    if let Some((_, single)) = IRREGULAR.iter().find(|(plural, _)| *plural == lower) {
        return keep_initial_case(word, single);
    }
    for (plural, single) in SUFFIXES {
        if lower.ends_with(plural) && lower.len() > plural.len() {
            let stem = &word[..word.len() - plural.len()];
            return format!("{stem}{single}");
        }
    }
    word.to_string()
}

fn keep_initial_case(original: &str, replacement: &str) -> String {
    if original.chars().next().is_some_and(char::is_uppercase) {
        studly_word(replacement)
    } else {
        replacement.to_string()
    }
}

fn studly_word(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// The model name Laravel would give a table.
pub fn model_for_table(table: &str) -> String {
    let words: Vec<&str> = table
        .split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
        .collect();
    let Some((last, rest)) = words.split_last() else {
        return table.to_string();
    };
    rest.iter()
        .map(|w| studly_word(w))
        .chain(std::iter::once(studly_word(&singular(last))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::model_for_table as model;

    #[test]
    fn follows_laravel_naming() {
        for (table, expected) in [
            ("tasks", "Task"),
            ("order_items", "OrderItem"),
            ("categories", "Category"),
            ("people", "Person"),
            ("addresses", "Address"),
            ("boxes", "Box"),
            ("statuses", "Status"),
            ("equipment", "Equipment"),
            ("user_profiles", "UserProfile"),
            ("heroes", "Hero"),
            ("matches", "Match"),
            ("news", "News"),
            ("blog-posts", "BlogPost"),
            ("todo", "Todo"),
        ] {
            assert_eq!(model(table), expected, "{table}");
        }
    }
}
