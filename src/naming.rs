//! Laravel's default model name for a table: `Str::studly(Str::singular($table))`
//! (`tasks` → `Task`, `order_items` → `OrderItem`, `warehouses` → `Warehouse`).
//!
//! `Str::singular` is `Pluralizer::singular`: the English inflector of doctrine/inflector 2.x
//! applied to the whole string, then `Pluralizer::matchCase`. (Laravel's `$uncountable` list is
//! only consulted by `plural`.) The Doctrine rules below are copied verbatim from
//! `lib/Doctrine/Inflector/Rules/English/{Inflectible,Uninflected}.php` and run by the tiny regex
//! engine at the bottom, which supports exactly the syntax they use.

use std::sync::OnceLock;

/// `Inflectible::getSingular()`: `(pattern, replacement)`, case-insensitive, first match wins.
const SINGULAR_RULES: &[(&str, &str)] = &[
    (r"(s)tatuses$", r"\1\2tatus"),
    (r"(s)tatus$", r"\1\2tatus"),
    (r"(c)ampus$", r"\1\2ampus"),
    (r"^(.*)(menu)s$", r"\1\2"),
    (r"(quiz)zes$", r"\1"),
    (r"(matr)ices$", r"\1ix"),
    (r"(vert|ind)ices$", r"\1ex"),
    (r"^(ox)en", r"\1"),
    (r"(alias)(es)*$", r"\1"),
    (r"(buffal|her|potat|tomat|volcan)oes$", r"\1o"),
    (
        r"(alumn|bacill|cact|foc|fung|nucle|radi|stimul|syllab|termin|viri?)i$",
        r"\1us",
    ),
    (r"([ftw]ax)es", r"\1"),
    (r"(analys|ax|cris|test|thes)es$", r"\1is"),
    (r"(shoe|slave)s$", r"\1"),
    (r"(o)es$", r"\1"),
    (r"ouses$", r"ouse"),
    (r"([^a])uses$", r"\1us"),
    (r"([m|l])ice$", r"\1ouse"),
    (r"(x|ch|ss|sh)es$", r"\1"),
    (r"(m)ovies$", r"\1\2ovie"),
    (r"(s)eries$", r"\1\2eries"),
    (r"([^aeiouy]|qu)ies$", r"\1y"),
    (r"([lr])ves$", r"\1f"),
    (r"(tive)s$", r"\1"),
    (r"(hive)s$", r"\1"),
    (r"(drive)s$", r"\1"),
    (r"(dive)s$", r"\1"),
    (r"(olive)s$", r"\1"),
    (r"([^fo])ves$", r"\1fe"),
    (r"(^analy)ses$", r"\1sis"),
    (
        r"(analy|diagno|^ba|(p)arenthe|(p)rogno|(s)ynop|(t)he)ses$",
        r"\1\2sis",
    ),
    (r"(tax)a$", r"\1on"),
    (r"(c)riteria$", r"\1riterion"),
    (r"([ti])a(?<!regatta)$", r"\1um"),
    (r"(p)eople$", r"\1\2erson"),
    (r"(m)en$", r"\1an"),
    (r"(c)hildren$", r"\1\2hild"),
    (r"(f)eet$", r"\1oot"),
    (r"(n)ews$", r"\1\2ews"),
    (r"eaus$", r"eau"),
    (r"^tights$", r"tights"),
    (r"^shorts$", r"shorts"),
    (r"s$", r""),
];

/// `Uninflected::getSingular()` (the default list, then the singular-only extras), joined the
/// way Doctrine's `Patterns` joins them: `^(?:a|b|…)$`, case-insensitive, whole word.
const UNINFLECTED: &str = "\
    \\w+media|advice|aircraft|amoyese|art|audio|baggage|bison|borghese|bream|breeches|britches|\
    buffalo|butter|cantus|carp|cattle|chassis|clippers|clothing|coal|cod|coitus|compensation|\
    congoese|contretemps|coreopsis|corps|cotton|data|debris|deer|diabetes|djinn|education|eland|\
    elk|emoji|equipment|evidence|faroese|feedback|fish|flounder|flour|foochowese|food|furniture|\
    gallows|genevese|genoese|gilbertese|gold|headquarters|herpes|hijinks|homework|hottentotese|\
    impatience|information|innings|jackanapes|jeans|jedi|kin|kiplingese|knowledge|kongoese|\
    leather|love|lucchese|luggage|mackerel|Maltese|management|metadata|mews|money|moose|mumps|\
    music|nankingese|news|nexus|niasese|nutrition|offspring|oil|patience|pekingese|piedmontese|\
    pincers|pistoiese|plankton|pliers|pokemon|police|polish|portuguese|proceedings|progress|\
    rabies|rain|research|rhinoceros|rice|salmon|sand|sarawakese|scissors|sea[- ]bass|series|\
    shavese|shears|sheep|siemens|silk|sms|soap|social media|spam|species|staff|sugar|swine|\
    talent|toothpaste|traffic|travel|trousers|trout|tuna|us|vermontese|vinegar|weather|\
    wenchowese|wheat|whiting|wildebeest|wood|wool|yengeese|\
    .*ss|clothes|data|fascia|fuchsia|galleria|mafia|militia|pants|petunia|sepia|trivia|utopia";

/// `Inflectible::getIrregular()` as `singular:plural`, in Doctrine's order. Singularizing flips
/// them into a map keyed by plural, so a later pair wins: `axes` → `axe`, not `axis`.
const IRREGULAR: &str = "\
    atlas:atlases axis:axes axe:axes beef:beefs blouse:blouses brother:brothers cafe:cafes \
    cave:caves chateau:chateaux niveau:niveaux child:children canvas:canvases cookie:cookies \
    brownie:brownies corpus:corpuses cow:cows criterion:criteria curriculum:curricula demo:demos \
    domino:dominoes echo:echoes epoch:epochs foot:feet fungus:fungi ganglion:ganglions gas:gases \
    genie:genies genus:genera goose:geese graffito:graffiti hippopotamus:hippopotami hoof:hoofs \
    human:humans iris:irises larva:larvae leaf:leaves lens:lenses loaf:loaves man:men \
    medium:media memorandum:memoranda money:monies mongoose:mongooses motto:mottoes move:moves \
    mythos:mythoi niche:niches nucleus:nuclei numen:numina occiput:occiputs octopus:octopuses \
    opus:opuses ox:oxen passerby:passersby penis:penises person:people plateau:plateaux \
    runner-up:runners-up safe:safes sex:sexes sieve:sieves soliloquy:soliloquies \
    son-in-law:sons-in-law syllabus:syllabi testis:testes thief:thieves tooth:teeth \
    tornado:tornadoes trilby:trilbys turf:turfs valve:valves volcano:volcanoes abuse:abuses \
    avalanche:avalanches cache:caches criterion:criteria curve:curves emphasis:emphases foe:foes \
    grave:graves hoax:hoaxes medium:media neurosis:neuroses save:saves wave:waves oasis:oases \
    valve:valves zombie:zombies";

/// The model name Laravel would give a table: `Str::studly(Str::singular($table))`.
pub fn model_for_table(table: &str) -> String {
    studly(&singular(table))
}

/// Laravel's `Str::singular`: Doctrine's singularization, then `Pluralizer::matchCase`.
pub fn singular(value: &str) -> String {
    match_case(doctrine_singularize(value), value)
}

/// Doctrine's `RulesetInflector::inflect` with the English singular ruleset.
fn doctrine_singularize(word: &str) -> String {
    static RULES: OnceLock<(Regex, Vec<(Regex, &str)>)> = OnceLock::new();
    let (uninflected, rules) = RULES.get_or_init(|| {
        let rules = SINGULAR_RULES.iter().map(|&(p, r)| (Regex::new(p), r));
        (Regex::new(&format!("^(?:{UNINFLECTED})$")), rules.collect())
    });
    if word.is_empty() || uninflected.is_match(word) {
        return word.to_string();
    }
    let lower = word.to_ascii_lowercase();
    let mut irregular = IRREGULAR
        .split_whitespace()
        .filter_map(|pair| pair.split_once(':'));
    if let Some((single, _)) = irregular.rfind(|(_, plural)| *plural == lower) {
        // `Substitutions::inflect` keeps an uppercase first letter (byte-wise, like PHP).
        return if word.as_bytes()[0] != lower.as_bytes()[0] {
            ascii_ucfirst(single)
        } else {
            single.to_string()
        };
    }
    rules
        .iter()
        .find(|(pattern, _)| pattern.is_match(word))
        .map_or_else(|| word.to_string(), |(p, r)| p.replace_all(word, r))
}

/// `Pluralizer::matchCase($value, $comparison)`: tries `mb_strtolower`, `mb_strtoupper`,
/// `ucfirst`, `ucwords`; the `ucwords` step can never apply once `ucfirst` has not, since both
/// change a lowercase first letter.
fn match_case(value: String, comparison: &str) -> String {
    if comparison.to_lowercase() == comparison {
        value.to_lowercase()
    } else if comparison.to_uppercase() == comparison {
        value.to_uppercase()
    } else if !comparison.starts_with(|c: char| c.is_ascii_lowercase()) {
        ascii_ucfirst(&value)
    } else {
        value
    }
}

/// PHP's `ucfirst`: uppercases the first byte if it is an ASCII lowercase letter.
fn ascii_ucfirst(word: &str) -> String {
    let mut out = word.to_string();
    if let Some(first) = out.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    out
}

/// `Str::studly`: `-` and `_` become spaces, then every whitespace-separated word gets an
/// uppercase first letter (`mb_ucfirst`) and the words are joined.
fn studly(value: &str) -> String {
    value
        .split(|c: char| c == '-' || c == '_' || c.is_whitespace())
        .flat_map(|word| {
            let mut chars = word.chars();
            let first = chars.next().into_iter().flat_map(char::to_uppercase);
            first.chain(chars)
        })
        .collect()
}

// ---- A tiny backtracking regex engine for the PCRE subset the Doctrine rules use ----
// Literals, `.`, `\w`, `[...]` / `[^...]` (no ranges), groups `(...)` / `(?:...)`, `|`, `^`,
// `$`, greedy `*` `+` `?`, and `(?<!literal)`. Matching is ASCII case-insensitive on bytes,
// like PCRE with `/i` and without `/u`.

type Span = Option<(usize, usize)>;

enum Node {
    /// One byte from the set (stored lowercase), or, if `negated`, one byte not in it.
    Class {
        set: Vec<u8>,
        negated: bool,
    },
    Start,
    End,
    /// `(?<!literal)`: the text before this point does not end with `literal`.
    NotAfter(Vec<u8>),
    /// A group of alternatives; capturing if it has an index.
    Group {
        index: Option<usize>,
        alts: Vec<Vec<Node>>,
    },
    Repeat {
        node: Box<Node>,
        min: usize,
        max: usize,
    },
}

struct Regex {
    root: Vec<Node>,
    groups: usize,
}

impl Regex {
    fn new(pattern: &str) -> Regex {
        let mut parser = Parser {
            src: pattern.as_bytes(),
            pos: 0,
            groups: 0,
        };
        let alts = parser.alternation();
        assert_eq!(parser.pos, pattern.len(), "unsupported pattern {pattern}");
        let root = vec![Node::Group {
            index: Some(0),
            alts,
        }];
        Regex {
            root,
            groups: parser.groups,
        }
    }

    /// The captures (group 0: the whole match) of the leftmost match starting at `from` or later.
    fn find_at(&self, text: &[u8], from: usize) -> Option<Vec<Span>> {
        (from..=text.len()).find_map(|start| {
            let mut caps = vec![None; self.groups + 1];
            let mut found = None;
            seq(text, &self.root, start, &mut caps, &mut |_, caps| {
                found = Some(caps.to_vec());
                true
            });
            found
        })
    }

    fn is_match(&self, word: &str) -> bool {
        self.find_at(&word.as_bytes().to_ascii_lowercase(), 0)
            .is_some()
    }

    /// PHP's `preg_replace`: every non-overlapping match, `\N` in the replacement being group N
    /// of the original text (empty if it did not take part or does not exist).
    fn replace_all(&self, word: &str, replacement: &str) -> String {
        let (original, text) = (word.as_bytes(), word.as_bytes().to_ascii_lowercase());
        let (mut out, mut pos) = (Vec::new(), 0);
        while let Some(caps) = self.find_at(&text, pos) {
            let (start, end) = caps[0].expect("group 0 always takes part");
            out.extend_from_slice(&original[pos..start]);
            let mut repl = replacement.bytes().peekable();
            while let Some(b) = repl.next() {
                match repl.next_if(|d| b == b'\\' && d.is_ascii_digit()) {
                    Some(digit) => {
                        if let Some(Some((s, e))) = caps.get(usize::from(digit - b'0')) {
                            out.extend_from_slice(&original[*s..*e]);
                        }
                    }
                    None => out.push(b),
                }
            }
            pos = end;
            if start == end {
                match original.get(pos) {
                    Some(&b) => out.push(b),
                    None => break,
                }
                pos += 1;
            }
        }
        out.extend_from_slice(&original[pos..]);
        String::from_utf8(out).unwrap_or_else(|_| word.to_string())
    }
}

/// Matches `nodes` at `pos`, then calls `k` with the end position; backtracks while `k` fails.
fn seq(
    text: &[u8],
    nodes: &[Node],
    pos: usize,
    caps: &mut [Span],
    k: &mut dyn FnMut(usize, &mut [Span]) -> bool,
) -> bool {
    let Some((node, rest)) = nodes.split_first() else {
        return k(pos, caps);
    };
    match node {
        Node::Class { set, negated } => text
            .get(pos)
            .is_some_and(|b| set.contains(b) != *negated && seq(text, rest, pos + 1, caps, k)),
        Node::Start => pos == 0 && seq(text, rest, pos, caps, k),
        Node::End => pos == text.len() && seq(text, rest, pos, caps, k),
        Node::NotAfter(lit) => !text[..pos].ends_with(lit) && seq(text, rest, pos, caps, k),
        Node::Group { index, alts } => alts.iter().any(|alt| {
            seq(text, alt, pos, caps, &mut |end, caps| {
                let Some(i) = *index else {
                    return seq(text, rest, end, caps, k);
                };
                let saved = caps[i].replace((pos, end));
                seq(text, rest, end, caps, k) || {
                    caps[i] = saved;
                    false
                }
            })
        }),
        Node::Repeat { node, min, max } => repeat(text, node, (*min, *max), rest, pos, caps, k),
    }
}

/// Greedy repetition of `node` between `min` and `max` times, then `rest`.
fn repeat(
    text: &[u8],
    node: &Node,
    (min, max): (usize, usize),
    rest: &[Node],
    pos: usize,
    caps: &mut [Span],
    k: &mut dyn FnMut(usize, &mut [Span]) -> bool,
) -> bool {
    let fewer = (min.saturating_sub(1), max.saturating_sub(1));
    let once = std::slice::from_ref(node);
    (max > 0
        && seq(text, once, pos, caps, &mut |next, caps| {
            next > pos && repeat(text, node, fewer, rest, next, caps, k)
        }))
        || (min == 0 && seq(text, rest, pos, caps, k))
}

struct Parser<'p> {
    src: &'p [u8],
    pos: usize,
    groups: usize,
}

impl Parser<'_> {
    fn eat(&mut self, token: &[u8]) -> bool {
        let found = self.src[self.pos..].starts_with(token);
        if found {
            self.pos += token.len();
        }
        found
    }

    /// The lowercased bytes up to (not including) `end`, which is consumed.
    fn until(&mut self, end: u8) -> Vec<u8> {
        let len = self.src[self.pos..].iter().position(|&b| b == end);
        let len = len.expect("unterminated group or class");
        let bytes = self.src[self.pos..self.pos + len].to_ascii_lowercase();
        self.pos += len + 1;
        bytes
    }

    fn alternation(&mut self) -> Vec<Vec<Node>> {
        let mut alts = vec![self.sequence()];
        while self.eat(b"|") {
            alts.push(self.sequence());
        }
        alts
    }

    fn sequence(&mut self) -> Vec<Node> {
        let mut seq = Vec::new();
        while let Some(&b) = self.src.get(self.pos).filter(|&&b| b != b'|' && b != b')') {
            self.pos += 1;
            let (min, max) = match b {
                b'*' => (0, usize::MAX),
                b'+' => (1, usize::MAX),
                b'?' => (0, 1),
                _ => {
                    seq.push(self.atom(b));
                    continue;
                }
            };
            let node = Box::new(seq.pop().expect("quantifier without an atom"));
            seq.push(Node::Repeat { node, min, max });
        }
        seq
    }

    fn atom(&mut self, b: u8) -> Node {
        let class = |set: &[u8], negated| Node::Class {
            set: set.to_vec(),
            negated,
        };
        match b {
            b'^' => Node::Start,
            b'$' => Node::End,
            b'.' => class(b"\n", true),
            b'\\' if self.eat(b"w") => class(b"abcdefghijklmnopqrstuvwxyz0123456789_", false),
            b'[' => {
                let negated = self.eat(b"^");
                class(&self.until(b']'), negated)
            }
            b'(' if self.eat(b"?<!") => Node::NotAfter(self.until(b')')),
            b'(' => {
                let index = if self.eat(b"?:") {
                    None
                } else {
                    self.groups += 1;
                    Some(self.groups)
                };
                let alts = self.alternation();
                assert!(self.eat(b")"), "unbalanced parenthesis");
                Node::Group { index, alts }
            }
            b'\\' => panic!("unsupported escape in a rule"),
            _ => class(&[b.to_ascii_lowercase()], false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{model_for_table, singular};

    /// `table:Model` pairs. Every expected value was worked out by hand from the rules of
    /// doctrine/inflector 2.x (`Rules/English/{Inflectible,Uninflected}.php`: uninflected, then
    /// irregular, then the first matching singular rule) and Laravel's `Pluralizer::matchCase`
    /// and `Str::studly` (the comment above each group names the deciding rule), then checked
    /// against PHP 8.2 running those very sources.
    const LARAVEL_MODELS: &[&str] = &[
        // `s$`, after no earlier rule matched (`causes`: `([^a])uses$` needs a non-`a`).
        "tasks:Task, users:User, posts:Post, comments:Comment, products:Product, orders:Order",
        "days:Day, keys:Key, surveys:Survey, employees:Employee, invoices:Invoice, prices:Price",
        "licenses:License, responses:Response, databases:Database, services:Service",
        "notices:Notice, slices:Slice, causes:Cause, pauses:Pause, clauses:Clause, photos:Photo",
        "videos:Video, settings:Setting, roles:Role, sessions:Session, gloves:Glove, roofs:Roof",
        "notifications:Notification, hooves:Hoove, quotas:Quota, regattas:Regatta, taxis:Taxi",
        // The whole name is singularized, so only its end changes; studly joins the words.
        "order_items:OrderItem, user_profiles:UserProfile, blog-posts:BlogPost",
        "user profiles:UserProfile, blog__posts:BlogPost, failed_jobs:FailedJob",
        "password_resets:PasswordReset, personal_access_tokens:PersonalAccessToken",
        "access_logs:AccessLog, order_statuses:OrderStatus, company_addresses:CompanyAddress",
        "order_people:OrderPerson, node_children:NodeChild, food_menus:FoodMenu, 2fa_codes:2faCode",
        // `ouses$`, `([^a])uses$`, `(x|ch|ss|sh)es$`, `([ftw]ax)es`, `(alias)(es)*$`, ...
        "warehouses:Warehouse, houses:House, spouses:Spouse, addresses:Address, boxes:Box",
        "matches:Match, branches:Branch, churches:Church, dishes:Dish, classes:Class",
        "glasses:Glass, businesses:Business, processes:Process, passes:Pass, taxes:Tax",
        "faxes:Fax, buses:Bus, bonuses:Bonus, viruses:Virus, campuses:Campus, excuses:Excus",
        "statuses:Status, aliases:Alias, quizzes:Quiz, menus:Menu, bureaus:Bureau",
        // `([^aeiouy]|qu)ies$`, `(m)ovies$`.
        "categories:Category, companies:Company, countries:Country, cities:City",
        "activities:Activity, replies:Reply, queries:Query, movies:Movie",
        // `([lr])ves$` (so `reserves` → `reserf`), `(tive|hive|drive|dive|olive)s$`, `([^fo])ves$`.
        "wives:Wife, lives:Life, knives:Knife, halves:Half, wolves:Wolf, shelves:Shelf",
        "calves:Calf, dwarves:Dwarf, scarves:Scarf, wharves:Wharf, reserves:Reserf",
        "archives:Archive, drives:Drive, objectives:Objective, olives:Olive",
        // `(buffal|her|potat|tomat|volcan)oes$`, `(shoe|slave)s$`.
        "heroes:Hero, potatoes:Potato, tomatoes:Tomato, shoes:Shoe, slaves:Slave",
        // Irregular words (whole name only; `axes` → `axe`: the later of two pairs wins).
        "people:Person, men:Man, children:Child, feet:Foot, teeth:Tooth, geese:Goose, oxen:Ox",
        "leaves:Leaf, loaves:Loaf, thieves:Thief, moves:Move, cookies:Cookie, brownies:Brownie",
        "zombies:Zombie, monies:Money, axes:Axe, atlases:Atlas, lenses:Lens, canvases:Canvas",
        "gases:Gas, abuses:Abuse, niches:Niche, caches:Cache, avalanches:Avalanche",
        "curves:Curve, valves:Valve, waves:Wave, caves:Cave, safes:Safe, echoes:Echo",
        "mottoes:Motto, criteria:Criterion, media:Medium, curricula:Curriculum",
        "memoranda:Memorandum, genera:Genus, graffiti:Graffito, larvae:Larva",
        "octopuses:Octopus, passersby:Passerby, runners-up:RunnerUp, sons-in-law:SonInLaw",
        // `(m)en$`, `([m|l])ice$`, Latin and Greek endings.
        "women:Woman, mice:Mouse, lice:Louse, analyses:Analysis, crises:Crisis, theses:Thesis",
        "diagnoses:Diagnosis, bases:Basis, emphases:Emphasis, oases:Oasis, matrices:Matrix",
        "indices:Index, vertices:Vertex, cacti:Cactus, fungi:Fungus, alumni:Alumnus",
        "radii:Radius, stimuli:Stimulus, viri:Virus, bacteria:Bacterium, stadia:Stadium",
        "taxa:Taxon",
        // Uninflected (whole name; `.*ss`, `\w+media` and `sea[- ]bass` are patterns).
        "equipment:Equipment, news:News, data:Data, metadata:Metadata, series:Series",
        "species:Species, sheep:Sheep, fish:Fish, deer:Deer, information:Information",
        "feedback:Feedback, staff:Staff, audio:Audio, sms:Sms, cattle:Cattle, kin:Kin",
        "clothes:Clothes, jeans:Jeans, scissors:Scissors, progress:Progress, address:Address",
        "social_media:SocialMedia, multimedia:Multimedia, sea-bass:SeaBass, sea bass:SeaBass",
        "police:Police, us:Us",
        // Rules that leave the word as it is, or no rule at all.
        "software:Software, tights:Tights, status:Status, campus:Campus, menu:Menu",
        "regatta:Regatta, task:Task, agenda:Agenda, related:Related, recommended:Recommended",
        "user_equipment:UserEquipment, old_news:OldNews",
        // Exact-word lists miss longer names, and singular words still meet `s$` / `([ti])a$`.
        "user_data:UserDatum, user_species:UserSpecy, quota:Quotum, bus:Bu, analysis:Analysi",
        // matchCase: lower, UPPER, Ucfirst, or as it came; studly keeps inner capitals.
        "Statuses:Status, TASKS:TASK, OrderItems:OrderItem, orderItems:OrderItem",
        "PEOPLE:PERSON, People:Person, Thieves:Thief",
    ];

    #[test]
    fn follows_laravel_naming() {
        let pairs = LARAVEL_MODELS.iter().flat_map(|line| line.split(", "));
        let mut count = 0;
        for (table, model) in pairs.map(|pair| pair.split_once(':').expect(pair)) {
            assert_eq!(model_for_table(table), model, "{table}");
            count += 1;
        }
        assert!(count >= 200, "{count} names");
    }

    #[test]
    fn singular_matches_case_like_laravel() {
        assert_eq!(singular("Warehouses"), "Warehouse");
        assert_eq!(singular("ORDER_ITEMS"), "ORDER_ITEM");
        assert_eq!(singular("blog-posts"), "blog-post");
        assert_eq!(singular("runners-up"), "runner-up");
        assert_eq!(model_for_table(""), "");
    }
}
