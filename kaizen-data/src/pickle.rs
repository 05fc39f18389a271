//! A minimal, safe reader of Python pickles: it parses the opcode stream into a tree of values and never executes
//! anything. A class reference (`GLOBAL`) becomes a name, a call (`REDUCE`) a node holding that name and its
//! arguments, and `BUILD` attaches the state to that node. The caller decides which names it accepts
//! (e.g. numpy's array reconstructor). Reads the binary opcodes of protocols 1 to 5 as far as plain data needs:
//! dicts, lists, tuples, ints, bools, None, floats, str, bytes, the memo, marks and frames (protocol 0's text
//! opcodes `I`, `L`, `S`, `V`, `F`, `p`, `g` are refused). Any other opcode is an error naming it and
//! its offset. Sizes are checked against the bytes left before anything is allocated.

use std::rc::Rc;

/// A parsed pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A Python 2 `str` or a Python 3 `bytes`.
    Bytes(Rc<Vec<u8>>),
    /// A Python 3 `str` (Python 2 `unicode`).
    Str(Rc<String>),
    /// A list.
    List(Rc<Vec<Value>>),
    /// A tuple.
    Tuple(Rc<Vec<Value>>),
    /// A dict, in insertion order.
    Dict(Rc<Vec<(Value, Value)>>),
    /// A class or function reference `module.name` (never resolved).
    Global(Rc<(String, String)>),
    /// `func(*args)` with the state `BUILD` gave it, if any (never called).
    Call(Rc<Call>),
}

/// A recorded (never performed) call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// What was called (a [`Value::Global`] for the pickles this reads).
    pub func: Value,
    /// Its argument tuple.
    pub args: Value,
    /// The state passed to `__setstate__` by `BUILD`.
    pub state: Option<Value>,
}

impl Value {
    /// The bytes of a `bytes` value, of a `str` whose characters are all below 256 (Latin-1: how a Python 2 string
    /// reads as text), or of the `_codecs.encode(str, "latin1")` call Python 3 writes for `bytes` at protocol 2
    /// (recognised, not called).
    pub fn latin1_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Value::Bytes(b) => Some(b.to_vec()),
            Value::Str(s) => s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect(),
            Value::Call(c) => {
                let Value::Global(g) = &c.func else {
                    return None;
                };
                if g.0 != "_codecs" || g.1 != "encode" {
                    return None;
                }
                let args = c.args.items()?;
                let enc = match args.get(1)? {
                    Value::Str(e) => e.to_ascii_lowercase(),
                    _ => return None,
                };
                if enc != "latin1" && enc != "latin-1" {
                    return None;
                }
                match args.first()? {
                    inner @ (Value::Bytes(_) | Value::Str(_)) => inner.latin1_bytes(),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The text of a `str`, or of bytes (any form of [`Value::latin1_bytes`]) read as Latin-1.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.to_string()),
            other => other
                .latin1_bytes()
                .map(|b| b.iter().map(|&c| char::from(c)).collect()),
        }
    }

    /// The value stored under key `key` (a `str` or Latin-1 `bytes` key) of a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| k.text().as_deref() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The items of a list or tuple.
    pub fn items(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }
}

/// A pickle that cannot be read, with the byte offset of the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickleError {
    /// Byte offset in the stream.
    pub offset: usize,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pickle byte {}: {}", self.offset, self.reason)
    }
}

/// Stack entries: marks, and values with their nesting depth (a scalar is 0).
enum Item {
    Mark,
    Val(Value, u32),
}

/// The deepest nesting of containers and calls accepted: deeper pickles are refused before a recursive walk (or the
/// drop of the value) could exhaust the stack. Real data pickles nest a handful of levels.
pub const MAX_DEPTH: u32 = 100;

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    memo: std::collections::HashMap<u64, (Value, u32)>,
    /// Items copied so far when a container shared with the memo was updated (copy on write); bounded so that a
    /// pickle re-extending a memoized container cannot make the work and memory grow with the square of its size.
    copied: usize,
}

impl<'a> Reader<'a> {
    fn err<T>(&self, reason: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError {
            offset: self.pos,
            reason: reason.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        if n > self.b.len() - self.pos {
            return self.err(format!(
                "needs {n} more bytes but {} are left (truncated file?)",
                self.b.len() - self.pos
            ));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<u64, PickleError> {
        let s = self.take(n)?;
        Ok(s.iter().rev().fold(0u64, |a, &c| (a << 8) | u64::from(c)))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.b[self.pos..];
        let Some(end) = rest.iter().position(|&c| c == b'\n') else {
            return self.err("a text argument without its newline");
        };
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }

    fn len_arg(&mut self, n: usize) -> Result<usize, PickleError> {
        let v = self.uint(n)?;
        usize::try_from(v).or_else(|_| self.err(format!("length {v} does not fit")))
    }

    /// Push a scalar.
    fn push(&mut self, v: Value) {
        self.stack.push(Item::Val(v, 0));
    }

    /// Push a value containing children of depth `child`: an error past [`MAX_DEPTH`].
    fn push_nested(&mut self, v: Value, child: u32) -> Result<(), PickleError> {
        let depth = child + 1;
        if depth > MAX_DEPTH {
            return self.err(format!("values nested deeper than {MAX_DEPTH} levels"));
        }
        self.stack.push(Item::Val(v, depth));
        Ok(())
    }

    fn pop_depth(&mut self) -> Result<(Value, u32), PickleError> {
        match self.stack.pop() {
            Some(Item::Val(v, d)) => Ok((v, d)),
            Some(Item::Mark) => self.err("a mark where a value was expected"),
            None => self.err("stack underflow"),
        }
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        Ok(self.pop_depth()?.0)
    }

    /// The top value, for an in-place update by children of depth `child`.
    fn top(&mut self, child: u32) -> Result<&mut Value, PickleError> {
        let pos = self.pos;
        match self.stack.last_mut() {
            Some(Item::Val(v, d)) if child < MAX_DEPTH => {
                *d = (*d).max(child + 1);
                Ok(v)
            }
            Some(Item::Val(..)) => Err(PickleError {
                offset: pos,
                reason: format!("values nested deeper than {MAX_DEPTH} levels"),
            }),
            _ => Err(PickleError {
                offset: pos,
                reason: "no value on the stack".into(),
            }),
        }
    }

    /// The values above the topmost mark (the mark is removed) and their deepest nesting.
    fn pop_mark(&mut self) -> Result<(Vec<Value>, u32), PickleError> {
        let Some(m) = self.stack.iter().rposition(|i| matches!(i, Item::Mark)) else {
            return self.err("no mark on the stack");
        };
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        let mut depth = 0;
        let values = items
            .into_iter()
            .filter_map(|i| match i {
                Item::Val(v, d) => {
                    depth = depth.max(d);
                    Some(v)
                }
                Item::Mark => None,
            })
            .collect();
        Ok((values, depth))
    }

    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>, PickleError> {
        if !items.len().is_multiple_of(2) {
            return self.err("an odd number of items for a dict");
        }
        let mut it = items.into_iter();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    /// Count the items a copy-on-write update of a shared container copies; an error past twice the input's size.
    fn charge_copy(&mut self, shared: bool, len: usize) -> Result<(), PickleError> {
        if shared {
            self.copied = self.copied.saturating_add(len);
            if self.copied > 2 * self.b.len() + 1024 {
                return self.err(
                    "memoized containers are updated over and over (not a plain-data pickle)",
                );
            }
        }
        Ok(())
    }

    fn set_items(&mut self, new: Vec<(Value, Value)>, child: u32) -> Result<(), PickleError> {
        let (shared, len) = match self.top(child)? {
            Value::Dict(d) => (Rc::strong_count(d) > 1, d.len()),
            _ => return self.err("SETITEM(S) on something that is not a dict"),
        };
        self.charge_copy(shared, len)?;
        if let Value::Dict(d) = self.top(child)? {
            Rc::make_mut(d).extend(new);
        }
        Ok(())
    }

    fn extend_list(&mut self, new: Vec<Value>, child: u32) -> Result<(), PickleError> {
        let (shared, len) = match self.top(child)? {
            Value::List(l) => (Rc::strong_count(l) > 1, l.len()),
            _ => return self.err("APPEND(S) on something that is not a list"),
        };
        self.charge_copy(shared, len)?;
        if let Value::List(l) = self.top(child)? {
            Rc::make_mut(l).extend(new);
        }
        Ok(())
    }

    fn bytes(&mut self, n: usize) -> Result<Value, PickleError> {
        Ok(Value::Bytes(Rc::new(self.take(n)?.to_vec())))
    }

    fn string(&mut self, n: usize) -> Result<Value, PickleError> {
        let s = self.take(n)?;
        match std::str::from_utf8(s) {
            Ok(t) => Ok(Value::Str(Rc::new(t.to_string()))),
            Err(_) => self.err("a str that is not UTF-8"),
        }
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        match self.memo.get(&key) {
            Some((v, d)) => {
                let item = Item::Val(v.clone(), *d);
                self.stack.push(item);
                Ok(())
            }
            None => self.err(format!("memo key {key} was never stored")),
        }
    }

    /// Store the top value in the memo. A snapshot: later updates of the stack's value (SETITEMS, APPENDS, BUILD)
    /// are not seen through the memo. Pickles that fetch a container from the memo after filling it (e.g. a second
    /// array reusing a memoized, BUILT dtype) therefore see its earlier state; the CIFAR batches read here do not.
    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        let (v, d) = match self.stack.last() {
            Some(Item::Val(v, d)) => (v.clone(), *d),
            _ => return self.err("no value on the stack to memoize"),
        };
        self.memo.insert(key, (v, d));
        Ok(())
    }

    /// Execute one opcode; `Ok(true)` at STOP.
    fn step(&mut self) -> Result<bool, PickleError> {
        let op = self.take(1)?[0];
        match op {
            0x80 => {
                let proto = self.uint(1)?;
                if proto > 5 {
                    return self.err(format!("pickle protocol {proto} is newer than 5"));
                }
            }
            0x95 => {
                self.uint(8)?; // FRAME: a length hint only
            }
            b'.' => return Ok(true),
            b'(' => self.stack.push(Item::Mark),
            b'}' => self.push(Value::Dict(Rc::new(Vec::new()))),
            b'd' => {
                let (items, d) = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.push_nested(Value::Dict(Rc::new(pairs)), d)?;
            }
            b's' => {
                let (v, dv) = self.pop_depth()?;
                let (k, dk) = self.pop_depth()?;
                self.set_items(vec![(k, v)], dv.max(dk))?;
            }
            b'u' => {
                let (items, d) = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.set_items(pairs, d)?;
            }
            b']' => self.push(Value::List(Rc::new(Vec::new()))),
            b'l' => {
                let (items, d) = self.pop_mark()?;
                self.push_nested(Value::List(Rc::new(items)), d)?;
            }
            b'a' => {
                let (v, d) = self.pop_depth()?;
                self.extend_list(vec![v], d)?;
            }
            b'e' => {
                let (items, d) = self.pop_mark()?;
                self.extend_list(items, d)?;
            }
            b')' => self.push(Value::Tuple(Rc::new(Vec::new()))),
            b't' => {
                let (items, d) = self.pop_mark()?;
                self.push_nested(Value::Tuple(Rc::new(items)), d)?;
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(n);
                let mut d = 0;
                for _ in 0..n {
                    let (v, dv) = self.pop_depth()?;
                    d = d.max(dv);
                    items.push(v);
                }
                items.reverse();
                self.push_nested(Value::Tuple(Rc::new(items)), d)?;
            }
            b'J' => {
                let v = self.uint(4)? as u32 as i32;
                self.push(Value::Int(i64::from(v)));
            }
            b'K' => {
                let v = self.uint(1)?;
                self.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = self.uint(2)?;
                self.push(Value::Int(v as i64));
            }
            0x8a => {
                let n = self.len_arg(1)?;
                if n > 8 {
                    return self.err(format!("an integer of {n} bytes"));
                }
                let raw = self.take(n)?;
                let mut v: i64 = 0;
                for (i, &c) in raw.iter().enumerate() {
                    v |= i64::from(c) << (8 * i);
                }
                if n > 0 && n < 8 && raw[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                self.push(Value::Int(v));
            }
            b'G' => {
                let raw = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(raw);
                self.push(Value::Float(f64::from_be_bytes(a)));
            }
            b'N' => self.push(Value::None),
            0x88 => self.push(Value::Bool(true)),
            0x89 => self.push(Value::Bool(false)),
            b'U' => {
                let n = self.len_arg(1)?;
                let v = self.bytes(n)?;
                self.push(v);
            }
            b'T' | b'B' => {
                let n = self.len_arg(4)?;
                let v = self.bytes(n)?;
                self.push(v);
            }
            b'C' => {
                let n = self.len_arg(1)?;
                let v = self.bytes(n)?;
                self.push(v);
            }
            0x8e | 0x96 => {
                // BINBYTES8, BYTEARRAY8 (protocol 5, in-band buffers)
                let n = self.len_arg(8)?;
                let v = self.bytes(n)?;
                self.push(v);
            }
            b'X' => {
                let n = self.len_arg(4)?;
                let v = self.string(n)?;
                self.push(v);
            }
            0x8c => {
                let n = self.len_arg(1)?;
                let v = self.string(n)?;
                self.push(v);
            }
            0x8d => {
                let n = self.len_arg(8)?;
                let v = self.string(n)?;
                self.push(v);
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.push(Value::Global(Rc::new((module, name))));
            }
            0x93 => {
                let name = self.pop()?.text();
                let module = self.pop()?.text();
                let (Some(module), Some(name)) = (module, name) else {
                    return self.err("STACK_GLOBAL without two strings");
                };
                self.push(Value::Global(Rc::new((module, name))));
            }
            b'R' | 0x81 => {
                let (args, da) = self.pop_depth()?;
                let (func, df) = self.pop_depth()?;
                let call = Value::Call(Rc::new(Call {
                    func,
                    args,
                    state: None,
                }));
                self.push_nested(call, da.max(df))?;
            }
            b'b' => {
                let (state, d) = self.pop_depth()?;
                match self.top(d)? {
                    Value::Call(c) => Rc::make_mut(c).state = Some(state),
                    _ => return self.err("BUILD on something that is not a recorded call"),
                }
            }
            b'q' => {
                let k = self.uint(1)?;
                self.memo_put(k)?;
            }
            b'r' => {
                let k = self.uint(4)?;
                self.memo_put(k)?;
            }
            0x94 => {
                let k = self.memo.len() as u64;
                self.memo_put(k)?;
            }
            b'h' => {
                let k = self.uint(1)?;
                self.memo_get(k)?;
            }
            b'j' => {
                let k = self.uint(4)?;
                self.memo_get(k)?;
            }
            other => {
                self.pos -= 1;
                return self.err(format!(
                    "opcode 0x{other:02x} is not supported (not a plain-data pickle)"
                ));
            }
        }
        Ok(false)
    }
}

/// Parse a whole pickle into its value. Nothing is imported or called.
pub fn parse(bytes: &[u8]) -> Result<Value, PickleError> {
    let mut r = Reader {
        b: bytes,
        pos: 0,
        stack: Vec::new(),
        memo: std::collections::HashMap::new(),
        copied: 0,
    };
    while !r.step()? {}
    let v = r.pop()?;
    if !r.stack.is_empty() {
        return r.err("values left on the stack after STOP");
    }
    Ok(v)
}
