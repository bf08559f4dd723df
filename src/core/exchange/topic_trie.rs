//! Topic-exchange matching: a trie of binding keys, matched against routing
//! keys the way RabbitMQ does (`rabbit_db_topic_exchange`).
//!
//! # Semantics
//! Routing keys and binding keys are sequences of words separated by `.`.
//! In a binding key the word `*` matches exactly one word and `#` matches zero
//! or more words; every other word matches itself, byte for byte.
//!
//! Splitting follows RabbitMQ exactly: `binary:split(Key, <<".">>, [global])`,
//! except that the empty key is **zero** words (`split_topic_key_binary(<<>>)
//! -> []`). So:
//! - `""` is zero words: `#` matches it, `*` does not, and the binding key `""`
//!   matches only the routing key `""`;
//! - `"a..b"` is three words, the middle one empty; `"."` is two empty words;
//!   `"a."` is `["a", ""]`. An empty word is an ordinary literal word.
//! - `*` and `#` are special only as whole words: `a*` is a literal word. In a
//!   routing key they are plain words (they can only be matched by wildcards,
//!   since a binding's `*`/`#` is always a wildcard).
//!
//! # Structure
//! Like RabbitMQ's topic trie: each node has literal children (word -> node),
//! plus at most one `*` child and one `#` child, and the destinations whose
//! binding key ends at that node. Nodes live in an arena (`Vec`) addressed by
//! `u32`, with a free list so unbinding and rebinding does not grow it.
//!
//! # Matching
//! [`TopicTrie::route`] runs an NFA simulation over states `(node, words
//! consumed)` with an explicit stack, so deep or pathological binding keys such
//! as `#.#.#.#...` cannot overflow the thread stack. A state can be reached by
//! more than one path only if there is a `#` edge between the root and its node
//! (every other edge consumes exactly one word), so only those states are
//! recorded in a visited set. That bounds the work by
//! (nodes under a `#`) x (words + 1) instead of the exponential number of ways
//! several `#`s can split a key. All working memory (word offsets, stack,
//! visited set, dedup set) is owned by the trie and keeps its capacity between
//! calls, so routing does not allocate once warmed up.

use crate::core::name_map::FxHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash};

/// "No node" marker for the `*` and `#` child slots.
const NIL: u32 = u32::MAX;
/// The root is always node 0 and is never freed.
const ROOT: u32 = 0;

/// The scratch sets hash with FxHash (`core::name_map`): their keys are node
/// ids, word indices and destination handles chosen by the broker, not by
/// clients. The literal-children maps use the std SipHash instead, because
/// their keys are words sent by clients and must not be open to hash
/// flooding.
type FxBuild = BuildHasherDefault<FxHasher>;

/// One trie node.
struct Node<D> {
    /// Literal-word children.
    children: HashMap<Box<[u8]>, u32>,
    /// Child reached by a `*` word, or NIL.
    star: u32,
    /// Child reached by a `#` word, or NIL.
    hash: u32,
    /// Destinations whose binding key ends here (no duplicates).
    bindings: Vec<D>,
    /// This node is the target of a `#` edge, so it may absorb any number of
    /// further words by staying put.
    is_hash: bool,
    /// Some edge from the root to here (inclusive) is `#`: only such nodes can
    /// be reached with different numbers of words consumed, or along several
    /// paths, so only their states need deduplicating.
    under_hash: bool,
}

impl<D> Node<D> {
    fn new(is_hash: bool, under_hash: bool) -> Self {
        Node {
            children: HashMap::new(),
            star: NIL,
            hash: NIL,
            bindings: Vec::new(),
            is_hash,
            under_hash,
        }
    }

    /// Nothing is bound here or below: the node can be pruned.
    fn is_unused(&self) -> bool {
        self.bindings.is_empty() && self.children.is_empty() && self.star == NIL && self.hash == NIL
    }
}

/// How a binding-key word is interpreted.
#[derive(Clone, Copy)]
enum Edge<'a> {
    Star,
    Hash,
    Word(&'a [u8]),
}

impl<'a> Edge<'a> {
    fn of(word: &'a [u8]) -> Self {
        match word {
            b"*" => Edge::Star,
            b"#" => Edge::Hash,
            w => Edge::Word(w),
        }
    }
}

/// Splits `key` at every `.` into `out` as byte ranges; the empty key is zero
/// words (see the module docs).
fn split_words(key: &[u8], out: &mut Vec<(usize, usize)>) {
    out.clear();
    if key.is_empty() {
        return;
    }
    let mut start = 0;
    for dot in dot_positions(key) {
        out.push((start, dot));
        start = dot + 1;
    }
    out.push((start, key.len()));
}

/// Positions of `.` in `key`. (A plain scan: keys are short-strings, at most
/// 255 bytes, so a SIMD search would not pay for itself.)
fn dot_positions(key: &[u8]) -> impl Iterator<Item = usize> + '_ {
    key.iter()
        .enumerate()
        .filter(|(_, &b)| b == b'.')
        .map(|(i, _)| i)
}

/// A set of `(binding key, destination)` pairs that can be matched against
/// routing keys. See the module docs for the matching rules.
pub struct TopicTrie<D: Copy + Eq + Hash> {
    nodes: Vec<Node<D>>,
    /// Ids of pruned nodes, reused before the arena grows.
    free: Vec<u32>,
    /// Number of (binding key, destination) pairs.
    len: usize,
    // Scratch space for bind/unbind/route, kept to avoid allocating per call.
    words: Vec<(usize, usize)>,
    path: Vec<u32>,
    stack: Vec<(u32, u32)>,
    visited: HashSet<(u32, u32), FxBuild>,
    seen: HashSet<D, FxBuild>,
}

impl<D: Copy + Eq + Hash> Default for TopicTrie<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D: Copy + Eq + Hash> TopicTrie<D> {
    /// An empty trie.
    pub fn new() -> Self {
        TopicTrie {
            nodes: vec![Node::new(false, false)],
            free: Vec::new(),
            len: 0,
            words: Vec::new(),
            path: Vec::new(),
            stack: Vec::new(),
            visited: HashSet::default(),
            seen: HashSet::default(),
        }
    }

    /// Number of (binding key, destination) pairs bound.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing is bound.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The child of `node` along `edge`, if any.
    fn child(&self, node: u32, edge: Edge<'_>) -> Option<u32> {
        let n = &self.nodes[node as usize];
        let id = match edge {
            Edge::Star => n.star,
            Edge::Hash => n.hash,
            Edge::Word(w) => *n.children.get(w)?,
        };
        (id != NIL).then_some(id)
    }

    /// The child of `node` along `edge`, created if missing.
    fn child_or_insert(&mut self, node: u32, edge: Edge<'_>) -> u32 {
        if let Some(id) = self.child(node, edge) {
            return id;
        }
        let is_hash = matches!(edge, Edge::Hash);
        let under_hash = is_hash || self.nodes[node as usize].under_hash;
        let fresh = Node::new(is_hash, under_hash);
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = fresh;
                id
            }
            None => {
                let id = u32::try_from(self.nodes.len())
                    .ok()
                    .filter(|&id| id != NIL)
                    .expect("topic trie node ids exhausted");
                self.nodes.push(fresh);
                id
            }
        };
        let parent = &mut self.nodes[node as usize];
        match edge {
            Edge::Star => parent.star = id,
            Edge::Hash => parent.hash = id,
            Edge::Word(w) => {
                parent.children.insert(w.into(), id);
            }
        }
        id
    }

    /// Binds `dest` with binding key `pattern`. Returns false if that exact
    /// pair was already bound (the trie is unchanged).
    pub fn bind(&mut self, pattern: &[u8], dest: D) -> bool {
        let mut words = std::mem::take(&mut self.words);
        split_words(pattern, &mut words);
        let mut node = ROOT;
        for &(s, e) in &words {
            node = self.child_or_insert(node, Edge::of(&pattern[s..e]));
        }
        self.words = words;
        let bindings = &mut self.nodes[node as usize].bindings;
        // Linear scan: a binding key rarely has more than a handful of
        // destinations, and bind is not on the per-message path.
        if bindings.contains(&dest) {
            return false;
        }
        bindings.push(dest);
        self.len += 1;
        true
    }

    /// Removes the pair (`pattern`, `dest`). Returns false if it was not
    /// bound. Nodes left with nothing bound at or below them are pruned.
    pub fn unbind(&mut self, pattern: &[u8], dest: D) -> bool {
        split_words(pattern, &mut self.words);
        self.path.clear();
        self.path.push(ROOT);
        let mut node = ROOT;
        for i in 0..self.words.len() {
            let (s, e) = self.words[i];
            match self.child(node, Edge::of(&pattern[s..e])) {
                Some(c) => node = c,
                None => return false,
            }
            self.path.push(node);
        }
        let bindings = &mut self.nodes[node as usize].bindings;
        let Some(pos) = bindings.iter().position(|d| *d == dest) else {
            return false;
        };
        bindings.swap_remove(pos);
        self.len -= 1;
        // Prune bottom-up: path[i] hangs off path[i - 1] by word i - 1.
        for i in (1..self.path.len()).rev() {
            let id = self.path[i];
            if !self.nodes[id as usize].is_unused() {
                break;
            }
            let (s, e) = self.words[i - 1];
            let parent = &mut self.nodes[self.path[i - 1] as usize];
            match Edge::of(&pattern[s..e]) {
                Edge::Star => parent.star = NIL,
                Edge::Hash => parent.hash = NIL,
                Edge::Word(w) => {
                    parent.children.remove(w);
                    if parent.children.is_empty() {
                        // Give back the table of a node that once had many children.
                        parent.children = HashMap::new();
                    }
                }
            }
            // Drop the node's (empty) allocations now rather than on reuse.
            self.nodes[id as usize] = Node::new(false, false);
            self.free.push(id);
        }
        true
    }

    /// Appends to `out` every destination bound with a key matching the
    /// routing key `key`, each destination at most once (even if several of
    /// its binding keys match). Entries already in `out` are left alone and
    /// are not considered for deduplication. Order is unspecified.
    ///
    /// Does not allocate once the scratch buffers and `out` have grown to fit.
    pub fn route(&mut self, key: &[u8], out: &mut Vec<D>) {
        let TopicTrie {
            nodes,
            words,
            stack,
            visited,
            seen,
            ..
        } = self;
        if nodes[ROOT as usize].is_unused() {
            return;
        }
        split_words(key, words);
        let n = words.len() as u32;
        stack.clear();
        // `clear` on a hashbrown set is O(capacity) even when empty; skip it.
        if !visited.is_empty() {
            visited.clear();
        }
        let start = out.len();
        // Number of nodes with bindings reached so far. The first one's
        // destinations are distinct already, so `seen` (the dedup set) is only
        // filled when a second one turns up; most keys match a single node.
        let mut terminals = 0usize;

        stack.push((ROOT, 0));
        while let Some((id, i)) = stack.pop() {
            let node = &nodes[id as usize];
            if node.under_hash && !visited.insert((id, i)) {
                continue;
            }
            if i == n {
                if !node.bindings.is_empty() {
                    terminals += 1;
                    if terminals == 1 {
                        out.extend_from_slice(&node.bindings);
                    } else {
                        if terminals == 2 {
                            if !seen.is_empty() {
                                seen.clear();
                            }
                            seen.extend(out[start..].iter().copied());
                        }
                        for &d in &node.bindings {
                            if seen.insert(d) {
                                out.push(d);
                            }
                        }
                    }
                }
            } else {
                let (s, e) = words[i as usize];
                if let Some(&c) = node.children.get(&key[s..e]) {
                    stack.push((c, i + 1));
                }
                if node.star != NIL {
                    stack.push((node.star, i + 1));
                }
                if node.is_hash {
                    // `#` swallows one more word and stays where it is.
                    stack.push((id, i + 1));
                }
            }
            if node.hash != NIL {
                // `#` matching zero words: same position, one node down.
                stack.push((node.hash, i));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sorted route result, for comparisons.
    fn route(t: &mut TopicTrie<u32>, key: &str) -> Vec<u32> {
        let mut out = Vec::new();
        t.route(key.as_bytes(), &mut out);
        let len = out.len();
        out.sort_unstable();
        out.dedup();
        assert_eq!(out.len(), len, "duplicate destinations for {key:?}");
        out
    }

    fn words(s: &[u8]) -> Vec<&[u8]> {
        if s.is_empty() {
            Vec::new()
        } else {
            s.split(|&b| b == b'.').collect()
        }
    }

    /// The obvious recursive matcher, used as the reference.
    fn ref_match(p: &[&[u8]], k: &[&[u8]]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&b"#", rest)) => (0..=k.len()).any(|j| ref_match(rest, &k[j..])),
            Some((&b"*", rest)) => !k.is_empty() && ref_match(rest, &k[1..]),
            Some((w, rest)) => !k.is_empty() && k[0] == *w && ref_match(rest, &k[1..]),
        }
    }

    fn matches(pattern: &str, key: &str) -> bool {
        let mut t = TopicTrie::new();
        t.bind(pattern.as_bytes(), 1u32);
        let hit = !route(&mut t, key).is_empty();
        assert_eq!(
            hit,
            ref_match(&words(pattern.as_bytes()), &words(key.as_bytes())),
            "trie and reference disagree on {pattern:?} vs {key:?}"
        );
        hit
    }

    #[test]
    fn rabbitmq_tutorial() {
        // Tutorial 5: Q1 <- *.orange.*, Q2 <- *.*.rabbit and lazy.#
        let mut t = TopicTrie::new();
        assert!(t.bind(b"*.orange.*", 1));
        assert!(t.bind(b"*.*.rabbit", 2));
        assert!(t.bind(b"lazy.#", 2));
        assert_eq!(t.len(), 3);
        assert_eq!(route(&mut t, "quick.orange.rabbit"), [1, 2]);
        assert_eq!(route(&mut t, "lazy.orange.elephant"), [1, 2]);
        assert_eq!(route(&mut t, "quick.orange.fox"), [1]);
        assert_eq!(route(&mut t, "lazy.brown.fox"), [2]);
        assert_eq!(route(&mut t, "lazy.pink.rabbit"), [2]);
        assert_eq!(route(&mut t, "quick.brown.fox"), [] as [u32; 0]);
        assert_eq!(route(&mut t, "orange"), [] as [u32; 0]);
        assert_eq!(route(&mut t, "quick.orange.new.rabbit"), [] as [u32; 0]);
        assert_eq!(route(&mut t, "lazy.orange.new.rabbit"), [2]);
    }

    #[test]
    fn hash_matches_everything() {
        for key in ["", "a", "a.b.c", ".", "a..b", "#", "*"] {
            assert!(matches("#", key), "{key:?}");
        }
        assert!(matches("#.#", ""));
        assert!(matches("#.#", "a.b"));
        assert!(matches("#.#.#", "x"));
    }

    #[test]
    fn hash_in_the_middle() {
        assert!(matches("a.#.b", "a.b"));
        assert!(matches("a.#.b", "a.x.b"));
        assert!(matches("a.#.b", "a.x.y.b"));
        assert!(matches("a.#.b", "a.b.b"));
        assert!(!matches("a.#.b", "a"));
        assert!(!matches("a.#.b", "a.b.c"));
        assert!(!matches("a.#.b", "b"));
        assert!(matches("#.b", "b"));
        assert!(matches("#.b", "a.b"));
        assert!(!matches("#.b", "b.a"));
        assert!(matches("a.#", "a"));
        assert!(!matches("a.#", ""));
    }

    #[test]
    fn empty_key_and_star() {
        // "" is zero words (RabbitMQ's split of <<>> is []).
        assert!(!matches("*", ""));
        assert!(matches("*", "a"));
        assert!(!matches("*", "a.b"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
        assert!(!matches("a", ""));
        // "." is two empty words.
        assert!(matches("*.*", "."));
        assert!(!matches("*", "."));
        assert!(matches("*", "*"));
        assert!(!matches("a", "*"));
    }

    #[test]
    fn empty_words() {
        assert!(matches("a..b", "a..b"));
        assert!(!matches("a..b", "a.b"));
        assert!(matches("a.*.b", "a..b"));
        assert!(matches("a.#.b", "a..b"));
        assert!(matches("a.", "a."));
        assert!(!matches("a.", "a"));
        assert!(matches(".a", ".a"));
        assert!(matches("#.", "a.b."));
    }

    #[test]
    fn literal_wildcard_lookalikes() {
        assert!(matches("a*", "a*"));
        assert!(!matches("a*", "ab"));
        assert!(!matches("#a", "a"));
    }

    #[test]
    fn bind_unbind_bookkeeping() {
        let mut t = TopicTrie::new();
        assert!(t.is_empty());
        assert!(t.bind(b"a.b", 1));
        assert!(!t.bind(b"a.b", 1));
        assert!(t.bind(b"a.b", 2));
        assert!(t.bind(b"a.*", 1));
        assert_eq!(t.len(), 3);
        assert!(!t.unbind(b"a.c", 1));
        assert!(!t.unbind(b"a.b", 3));
        assert!(!t.unbind(b"a", 1));
        assert!(t.unbind(b"a.b", 1));
        assert!(!t.unbind(b"a.b", 1));
        assert_eq!(route(&mut t, "a.b"), [1, 2]); // 1 still via a.*
        assert!(t.unbind(b"a.*", 1));
        assert_eq!(route(&mut t, "a.b"), [2]);
        assert!(t.unbind(b"a.b", 2));
        assert!(t.is_empty());
        assert_eq!(route(&mut t, "a.b"), [] as [u32; 0]);
        // Everything but the root was pruned and sits on the free list.
        assert!(t.nodes[0].is_unused());
        assert_eq!(t.free.len(), t.nodes.len() - 1);
    }

    #[test]
    fn unbind_prunes_only_unused_nodes() {
        let mut t = TopicTrie::new();
        t.bind(b"a.b.c", 1);
        t.bind(b"a", 2);
        t.bind(b"a.#.d", 3);
        let live = t.nodes.len() - t.free.len();
        assert_eq!(live, 1 + 3 + 2); // root, a, b, c, #, d
        assert!(t.unbind(b"a.b.c", 1));
        assert_eq!(t.nodes.len() - t.free.len(), 1 + 1 + 2);
        assert_eq!(route(&mut t, "a"), [2]);
        assert_eq!(route(&mut t, "a.b.c"), [] as [u32; 0]);
        assert_eq!(route(&mut t, "a.x.y.d"), [3]);
        assert!(t.unbind(b"a.#.d", 3));
        assert_eq!(t.nodes.len() - t.free.len(), 2);
        // Freed ids are reused.
        let total = t.nodes.len();
        t.bind(b"a.#.x.y", 4);
        assert_eq!(t.nodes.len(), total);
        assert_eq!(route(&mut t, "a.q.x.y"), [4]);
    }

    #[test]
    fn dedups_one_destination_matched_by_many_keys() {
        let mut t = TopicTrie::new();
        for p in ["a.#", "#.b", "a.b", "*.b", "#", "a.*", "#.#"] {
            t.bind(p.as_bytes(), 7);
        }
        t.bind(b"a.b", 8);
        let mut out = vec![7]; // pre-existing entries are left alone
        t.route(b"a.b", &mut out);
        out.sort_unstable();
        assert_eq!(out, [7, 7, 8]);
        assert_eq!(route(&mut t, "a.b"), [7, 8]);
    }

    #[test]
    fn pathological_hashes_are_polynomial() {
        let mut t = TopicTrie::new();
        let pattern = vec!["#"; 60].join(".") + ".z";
        t.bind(pattern.as_bytes(), 1);
        let key = vec!["y"; 250].join(".");
        let start = std::time::Instant::now();
        assert_eq!(route(&mut t, &key), [] as [u32; 0]);
        assert_eq!(route(&mut t, &(key.clone() + ".z")), [1]);
        // 61 * 252 states; exponential blowup would never finish.
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert!(t.stack.capacity() < 10_000);
    }

    #[test]
    fn ten_thousand_bindings() {
        let mut t = TopicTrie::new();
        for i in 0..10_000u32 {
            assert!(t.bind(format!("user.{i}.*").as_bytes(), i));
            // The same 100 pairs again and again: only the first bind is new.
            let again = t.bind(format!("#.shard{}", i % 100).as_bytes(), 100_000 + i % 100);
            assert_eq!(again, i < 100);
        }
        assert_eq!(t.len(), 10_000 + 100);
        assert_eq!(route(&mut t, "user.1234.login"), [1234]);
        assert_eq!(route(&mut t, "user.1234.login.shard7"), [100_007]);
        assert_eq!(route(&mut t, "user.99.shard42"), [99, 100_042]);
        assert_eq!(route(&mut t, "user.10000.x"), [] as [u32; 0]);
        let mut out = Vec::new();
        for i in (0..10_000u32).step_by(7) {
            out.clear();
            t.route(format!("user.{i}.x").as_bytes(), &mut out);
            assert_eq!(out, [i]);
        }
        for i in 0..10_000u32 {
            assert!(t.unbind(format!("user.{i}.*").as_bytes(), i));
        }
        assert_eq!(t.len(), 100);
        assert_eq!(route(&mut t, "user.99.shard42"), [100_042]);
    }

    /// xorshift64*: tiny deterministic PRNG for the randomized comparison.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn key(&mut self, alphabet: &[&str], max_words: usize) -> String {
            let n = self.below(max_words + 1);
            (0..n)
                .map(|_| alphabet[self.below(alphabet.len())])
                .collect::<Vec<_>>()
                .join(".")
        }
    }

    #[test]
    fn randomized_against_reference() {
        let pattern_alphabet = ["a", "b", "*", "#", ""];
        let key_alphabet = ["a", "b", "", "*", "#"];
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut t = TopicTrie::new();
            let mut bound: Vec<(String, u32)> = Vec::new();
            for _ in 0..30 {
                let p = rng.key(&pattern_alphabet, 5);
                let d = rng.below(12) as u32;
                let fresh = !bound.contains(&(p.clone(), d));
                assert_eq!(t.bind(p.as_bytes(), d), fresh);
                if fresh {
                    bound.push((p, d));
                }
            }
            for round in 0..3 {
                assert_eq!(t.len(), bound.len());
                for _ in 0..150 {
                    let key = rng.key(&key_alphabet, 6);
                    let kw = words(key.as_bytes());
                    let mut want: Vec<u32> = bound
                        .iter()
                        .filter(|(p, _)| ref_match(&words(p.as_bytes()), &kw))
                        .map(|&(_, d)| d)
                        .collect();
                    want.sort_unstable();
                    want.dedup();
                    assert_eq!(
                        route(&mut t, &key),
                        want,
                        "seed {seed} round {round} key {key:?}"
                    );
                }
                // Unbind about a third, and try some pairs that are not bound.
                let mut i = 0;
                while i < bound.len() {
                    if rng.below(3) == 0 {
                        let (p, d) = bound.swap_remove(i);
                        assert!(t.unbind(p.as_bytes(), d));
                        assert!(!t.unbind(p.as_bytes(), d));
                    } else {
                        i += 1;
                    }
                }
                let p = rng.key(&pattern_alphabet, 5);
                let d = 100 + rng.below(5) as u32;
                assert!(!t.unbind(p.as_bytes(), d));
            }
        }
    }
}
