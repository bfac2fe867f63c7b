//! Reads a page straight into mapped records, without building the page as a
//! `serde_json::Value`: the parser walks the body once, descends only along
//! `data_from`, the next-page path and the record paths the manifest maps,
//! and skips everything else unread. Each record's values are mapped and
//! packed into the arena as soon as the record closes.
//!
//! Gives the same records, next-page value and `data_from` verdict as
//! parsing the page into a `Value` and selecting with the manifest's paths
//! (a repeated key counts once, the last one wins); the tests hold the two
//! side by side. Only dot paths are projected: a record path that is a
//! JSONPath makes each record a `Value` (still not the whole page), and a
//! `data_from` or next-page path that is a JSONPath is not projected at all.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::manifest::{FieldPath, Manifest, Pagination};
use crate::mapping::dot_get;
use crate::mapping::{RecordArena, Slot, map_record, push_slots};

/// How a manifest's pages are read without a whole-page `Value`.
#[derive(Debug)]
pub struct Projection {
    page: PageNode,
    records: RecordShape,
}

/// What `data_from` pointed at on one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Missing,
    /// A list of this many records (all pushed to the arena).
    List(usize),
    /// Something else; what kind (`an object`, `a string`, ...).
    Other(&'static str),
}

/// One page, read.
#[derive(Debug)]
pub struct PageOut {
    pub found: Found,
    /// The value at the next-page path, if the manifest has one and the page holds it.
    pub next: Option<Value>,
}

#[derive(Debug, Default)]
struct PageNode {
    children: Vec<(String, PageNode)>,
    records: bool,
    next: bool,
}

#[derive(Debug)]
enum RecordShape {
    /// Every record path is a dot path: only they are read.
    Paths(RecordNode),
    /// Some path is a JSONPath: each record is read whole, then mapped.
    Whole,
}

#[derive(Debug, Default)]
struct RecordNode {
    children: Vec<(String, RecordNode)>,
    /// Structure entries whose path ends here: the value here is read whole.
    here: Vec<usize>,
    /// Entries whose path goes on below a node read whole, with the rest of the path.
    below: Vec<(usize, Vec<String>)>,
    /// Every entry at or under this node, to forget when a repeated key restarts it.
    all: Vec<usize>,
}

impl Projection {
    /// The projection of `m`'s pages, or `None` when its `data_from` or
    /// next-page path cannot be projected (a JSONPath, or one path inside the other).
    pub fn new(m: &Manifest) -> Option<Projection> {
        let FieldPath::Dot(data_from) = &m.data_from else { return None };
        let next = match &m.pagination {
            Pagination::NextUrl(path) | Pagination::Token { from: path, .. } => match path {
                FieldPath::Dot(segs) => Some(segs),
                FieldPath::Json { .. } => return None,
            },
            Pagination::None | Pagination::LinkNext | Pagination::Numbered { .. } => None,
        };
        if let Some(next) = next
            && (next.starts_with(data_from) || data_from.starts_with(next))
        {
            return None;
        }
        let mut page = PageNode::default();
        page.descend(data_from).records = true;
        if let Some(next) = next {
            page.descend(next).next = true;
        }
        let records = if m.data_structure.iter().all(|r| matches!(r.path, FieldPath::Dot(_))) {
            let mut root = RecordNode::default();
            for (i, rule) in m.data_structure.iter().enumerate() {
                if let FieldPath::Dot(segs) = &rule.path {
                    root.descend(segs).here.push(i);
                }
            }
            settle(&mut root);
            RecordShape::Paths(root)
        } else {
            RecordShape::Whole
        };
        Some(Projection { page, records })
    }

    /// Reads one page body into `arena` (records numbered on from its length).
    /// On a JSON error the arena may hold part of the page: the run fails anyway.
    pub fn read(&self, body: &[u8], m: &Manifest, arena: &mut RecordArena) -> Result<PageOut, serde_json::Error> {
        // What a read skips it still walks (`Skip`), so serde_json's depth
        // limit holds here as it does for a parsed `Value`.
        self.walk(body, m, arena, false)
    }

    /// What `read` would say about a page (its `data_from` verdict and
    /// next-page value) without reading its records: the list is only
    /// counted, so the next page can be asked for while another thread reads
    /// this one. Checks the JSON's structure; only `read` checks its strings' UTF-8.
    pub fn skim(&self, body: &[u8], m: &Manifest) -> Result<PageOut, serde_json::Error> {
        self.walk(body, m, &mut RecordArena::default(), true)
    }

    fn walk(
        &self,
        body: &[u8],
        m: &Manifest,
        arena: &mut RecordArena,
        skim: bool,
    ) -> Result<PageOut, serde_json::Error> {
        let mut ctx =
            Ctx { m, shape: &self.records, arena, base: 0, found: Found::Missing, next: None, slots: Vec::new(), skim };
        if !skim {
            ctx.slots = vec![None; m.data_structure.len()];
        }
        ctx.base = ctx.arena.len();
        // A read checks the whole page's UTF-8 at once (fast on ASCII) so
        // that no string is checked again as it is read: a sixth of a read's
        // time went to checking strings one by one. A page that is not UTF-8
        // throughout is read from bytes as before, each string it walks
        // (kept or skipped) checked then: the same records and errors.
        match (!skim).then(|| std::str::from_utf8(body)) {
            Some(Ok(text)) => {
                let mut de = serde_json::Deserializer::from_str(text);
                PageSeed { node: &self.page, ctx: &mut ctx }.deserialize(&mut de)?;
                de.end()?;
            }
            _ => {
                let mut de = serde_json::Deserializer::from_slice(body);
                PageSeed { node: &self.page, ctx: &mut ctx }.deserialize(&mut de)?;
                de.end()?;
            }
        }
        Ok(PageOut { found: ctx.found, next: ctx.next })
    }
}

/// What a page nested deeper than serde_json's limit (the same for a parsed
/// `Value` and for a read) is told, on either path.
pub const TOO_DEEP: &str = "it nests arrays and objects deeper than 127 levels, rosterd's limit";

/// A JSON value a read does not keep, walked through `deserialize_any` (not
/// `IgnoredAny`, which serde_json skips without its depth limit).
struct Skip;

impl<'de> serde::Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_key::<Skip>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }
}

/// A path tree: `PageNode` and `RecordNode` share the walk that adds a path.
trait Tree: Default {
    fn children(&mut self) -> &mut Vec<(String, Self)>;

    /// The node at `segs` below `self`, made on the way where missing.
    fn descend(&mut self, segs: &[String]) -> &mut Self {
        let mut node = self;
        for seg in segs {
            let children = node.children();
            let i = match children.iter().position(|(k, _)| k == seg) {
                Some(i) => i,
                None => {
                    children.push((seg.clone(), Self::default()));
                    children.len() - 1
                }
            };
            node = &mut node.children()[i].1;
        }
        node
    }
}

impl Tree for PageNode {
    fn children(&mut self) -> &mut Vec<(String, Self)> {
        &mut self.children
    }
}

impl Tree for RecordNode {
    fn children(&mut self) -> &mut Vec<(String, Self)> {
        &mut self.children
    }
}

/// Fills `all`, and turns entries under a node read whole into `below` paths.
fn settle(node: &mut RecordNode) {
    for (_, child) in &mut node.children {
        settle(child);
    }
    node.all = node.here.clone();
    for (_, child) in &node.children {
        node.all.extend(&child.all);
    }
    if !node.here.is_empty() {
        let mut below = Vec::new();
        for (key, child) in std::mem::take(&mut node.children) {
            collect_below(&child, &mut vec![key], &mut below);
        }
        node.below = below;
    }
}

fn collect_below(node: &RecordNode, path: &mut Vec<String>, out: &mut Vec<(usize, Vec<String>)>) {
    for &entry in &node.here {
        out.push((entry, path.clone()));
    }
    for (key, child) in &node.children {
        path.push(key.clone());
        collect_below(child, path, out);
        path.pop();
    }
    for (entry, rest) in &node.below {
        let mut full = path.clone();
        full.extend(rest.iter().cloned());
        out.push((*entry, full));
    }
}

struct Ctx<'c, 'de> {
    m: &'c Manifest,
    shape: &'c RecordShape,
    arena: &'c mut RecordArena,
    /// The arena's length before this page.
    base: usize,
    found: Found,
    next: Option<Value>,
    /// Per structure entry: what the record being read holds there.
    slots: Vec<Option<Slot<'de>>>,
    /// Records are counted, not read (`Projection::skim`).
    skim: bool,
}

/// A map key, borrowed from the body when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(Key)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

fn child<'n, N>(children: &'n [(String, N)], key: &str) -> Option<&'n N> {
    children.iter().find(|(k, _)| k == key).map(|(_, n)| n)
}

/// The index `i` as a dot-path segment would spell it, for lists walked by position.
fn index_child<N>(children: &[(String, N)], i: usize) -> Option<&N> {
    if children.is_empty() {
        return None;
    }
    child(children, &i.to_string())
}

struct PageSeed<'a, 'c, 'de> {
    node: &'a PageNode,
    ctx: &'a mut Ctx<'c, 'de>,
}

impl<'de> DeserializeSeed<'de> for PageSeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.node.next {
            self.ctx.next = Some(Value::deserialize(d)?);
            return Ok(());
        }
        d.deserialize_any(self)
    }
}

impl PageSeed<'_, '_, '_> {
    /// `data_from` is here but is not a list.
    fn other(&mut self, kind: &'static str) {
        if self.node.records {
            self.ctx.arena.truncate(self.ctx.base);
            self.ctx.found = Found::Other(kind);
        }
    }
}

impl<'de> Visitor<'de> for PageSeed<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.node.records {
            // A repeated key: the last list wins, as in a parsed document.
            self.ctx.arena.truncate(self.ctx.base);
            let mut n = 0;
            if self.ctx.skim {
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
            } else {
                while read_record(&mut seq, self.ctx, n)? {
                    n += 1;
                }
            }
            self.ctx.found = Found::List(n);
            return Ok(());
        }
        let mut i = 0;
        loop {
            let more = match index_child(&self.node.children, i) {
                Some(node) => seq.next_element_seed(PageSeed { node, ctx: &mut *self.ctx })?.is_some(),
                None if self.ctx.skim => seq.next_element::<IgnoredAny>()?.is_some(),
                None => seq.next_element::<Skip>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.other("an object");
        while let Some(key) = map.next_key_seed(Key)? {
            match child(&self.node.children, &key) {
                Some(node) => {
                    if node.records {
                        self.ctx.arena.truncate(self.ctx.base);
                        self.ctx.found = Found::Missing;
                    }
                    map.next_value_seed(PageSeed { node, ctx: &mut *self.ctx })?
                }
                None if self.ctx.skim => {
                    map.next_value::<IgnoredAny>()?;
                }
                None => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.other("null");
        Ok(())
    }
    fn visit_bool<E: de::Error>(mut self, _: bool) -> Result<(), E> {
        self.other("a boolean");
        Ok(())
    }
    fn visit_i64<E: de::Error>(mut self, _: i64) -> Result<(), E> {
        self.other("a number");
        Ok(())
    }
    fn visit_u64<E: de::Error>(mut self, _: u64) -> Result<(), E> {
        self.other("a number");
        Ok(())
    }
    fn visit_f64<E: de::Error>(mut self, _: f64) -> Result<(), E> {
        self.other("a number");
        Ok(())
    }
    fn visit_str<E: de::Error>(mut self, _: &str) -> Result<(), E> {
        self.other("a string");
        Ok(())
    }
}

/// Reads the next record of a `data_from` list into the arena; false at the end of the list.
fn read_record<'de, A: SeqAccess<'de>>(seq: &mut A, ctx: &mut Ctx<'_, 'de>, n: usize) -> Result<bool, A::Error> {
    let index = ctx.base + n;
    let structure = &ctx.m.data_structure;
    match ctx.shape {
        RecordShape::Whole => {
            let Some(value) = seq.next_element::<Value>()? else { return Ok(false) };
            ctx.arena.push(&map_record(structure, index, &value));
        }
        RecordShape::Paths(root) => {
            ctx.slots.iter_mut().for_each(|s| *s = None);
            if seq.next_element_seed(RecordSeed { node: root, slots: &mut ctx.slots })?.is_none() {
                return Ok(false);
            }
            push_slots(ctx.arena, structure, &ctx.slots);
        }
    }
    Ok(true)
}

struct RecordSeed<'a, 'de> {
    node: &'a RecordNode,
    slots: &'a mut [Option<Slot<'de>>],
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.node.here.is_empty() {
            return d.deserialize_any(self);
        }
        let slot = d.deserialize_any(SlotVisitor)?;
        if let Slot::Value(value) = &slot {
            for (entry, rest) in &self.node.below {
                self.slots[*entry] = dot_get(value, rest).cloned().map(Slot::Value);
            }
        } else {
            for (entry, _) in &self.node.below {
                self.slots[*entry] = None;
            }
        }
        if let Some((&last, others)) = self.node.here.split_last() {
            for &entry in others {
                self.slots[entry] = Some(slot.clone());
            }
            self.slots[last] = Some(slot);
        }
        Ok(())
    }
}

/// Reads one value as a `Slot`: a string borrowed from the page when it has
/// no escapes, anything else as the `Value` a full parse would give.
struct SlotVisitor;

impl<'de> Visitor<'de> for SlotVisitor {
    type Value = Slot<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Slot::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Slot::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Slot::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Slot::Value(Value::Null))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Slot::Value(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Slot::Value(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Slot::Value(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Slot::Value(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Slot::Value)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Slot::Value)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key)? {
            match child(&self.node.children, &key) {
                Some(node) => {
                    // A repeated key: forget what the earlier one filled in.
                    for &entry in &node.all {
                        self.slots[entry] = None;
                    }
                    map.next_value_seed(RecordSeed { node, slots: &mut *self.slots })?
                }
                None => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let more = match index_child(&self.node.children, i) {
                Some(node) => seq.next_element_seed(RecordSeed { node, slots: &mut *self.slots })?.is_some(),
                None => seq.next_element::<Skip>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
