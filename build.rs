//! Embeds `sql/migrations/NNNN_name.sql` in order, refusing gaps or duplicate numbers, so a
//! migration can never be skipped or applied twice because of a file-naming slip.
use std::{env, fs, path::Path};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<(u32, String)> = fs::read_dir(&dir)
        .expect("sql/migrations exists")
        .map(|entry| {
            entry
                .expect("readable entry")
                .file_name()
                .into_string()
                .expect("utf-8 name")
        })
        .filter(|name| name.ends_with(".sql"))
        .map(|name| {
            let number = name
                .split('_')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| {
                    panic!("migration {name} must start with a number: NNNN_name.sql")
                });
            (number, name)
        })
        .collect();
    files.sort();
    let mut code = String::from("pub(crate) const MIGRATIONS: &[Migration] = &[\n");
    for (index, (number, name)) in files.iter().enumerate() {
        assert_eq!(
            *number as usize,
            index + 1,
            "migrations must be numbered 1, 2, 3… without gaps ({name})"
        );
        let path = dir.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        code.push_str(&format!(
            "    Migration {{ version: {number}, name: {name:?}, sql: include_str!({path:?}) }},\n",
            name = name.trim_end_matches(".sql"),
            path = path.display().to_string()
        ));
    }
    code.push_str("];\n");
    fs::write(
        Path::new(&env::var("OUT_DIR").unwrap()).join("migrations.rs"),
        code,
    )
    .unwrap();
}
