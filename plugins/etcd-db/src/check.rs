//! The consistency check, after bbolt's `tx.Check`.

use crate::db::MAX_DEPTH;
use crate::page::{Loc, Page, parse_bucket_value};
use crate::{Db, Error, ReadAt, hex};

/// Problems listed in a report; more are only counted.
const MAX_LISTED: usize = 1000;

/// One inconsistency found by [`Db::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The page concerned (for an inline bucket: the page holding its
    /// value).
    pub page: u64,
    /// Whether the problem is in an inline bucket's page.
    pub inline: bool,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let note = if self.inline { " (inline bucket)" } else { "" };
        write!(f, "page {}{note}: {}", self.page, self.message)
    }
}

/// What [`Db::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// The page size.
    pub page_size: u32,
    /// The high-water mark: pages `0..high_water_mark` make the database.
    pub high_water_mark: u64,
    /// The transaction id of the meta in use.
    pub txid: u64,
    /// Whether a freelist page is persisted (otherwise every unreachable
    /// page counts as free, as bbolt rebuilds the freelist that way).
    pub freelist_persisted: bool,
    /// Pages reachable from the meta pages: the meta pages, the freelist
    /// page and every page of every bucket (overflow pages included).
    pub reachable_pages: u64,
    /// Pages the freelist lists (below the high-water mark).
    pub free_pages: u64,
    /// Pages below the high-water mark that are neither reachable nor free:
    /// leaked or lost pages.
    pub unreachable_pages: u64,
    /// Buckets seen, nested ones included (not the root bucket).
    pub buckets: u64,
    /// Inline buckets among them.
    pub inline_buckets: u64,
    /// Key/value pairs seen (not counting bucket entries).
    pub keys: u64,
    /// Depth of the deepest bucket tree.
    pub max_depth: usize,
    /// The problems found (the first 1000).
    pub problems: Vec<Problem>,
    /// The number of problems found, listed or not.
    pub problem_count: u64,
}

impl CheckReport {
    /// Whether the database passed: no problems.
    pub fn is_ok(&self) -> bool {
        self.problem_count == 0
    }

    fn problem(&mut self, loc: Loc, message: impl Into<String>) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            let (page, inline) = match loc {
                Loc::Disk(p) => (p, false),
                Loc::Inline(p) => (p, true),
            };
            self.problems.push(Problem {
                page,
                inline,
                message: message.into(),
            });
        }
    }

    fn error(&mut self, e: Error) -> Result<(), Error> {
        match e {
            Error::Corrupt {
                page,
                inline,
                reason,
            } => {
                let loc = if inline {
                    Loc::Inline(page)
                } else {
                    Loc::Disk(page)
                };
                self.problem(loc, reason);
                Ok(())
            }
            // A failing source is not a finding about the data.
            other => Err(other),
        }
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} problems; {} pages ({} reachable, {} free, {} unreachable), {} buckets, {} keys",
            self.problem_count,
            self.high_water_mark,
            self.reachable_pages,
            self.free_pages,
            self.unreachable_pages,
            self.buckets,
            self.keys
        )?;
        for p in self.problems.iter().take(5) {
            write!(f, "; {p}")?;
        }
        if self.problem_count > 5 {
            write!(f, "; ...")?;
        }
        Ok(())
    }
}

/// A bitmap over page ids `0..n`.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: u64) -> Self {
        Bits(vec![0; n.div_ceil(64) as usize])
    }

    fn get(&self, i: u64) -> bool {
        self.0
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Sets bit `i`; whether it was set before.
    fn set(&mut self, i: u64) -> bool {
        match self.0.get_mut((i / 64) as usize) {
            Some(w) => {
                let was = *w & (1 << (i % 64)) != 0;
                *w |= 1 << (i % 64);
                was
            }
            None => false,
        }
    }
}

/// A page of a bucket tree still to check, with what its parent says
/// about it.
struct Work {
    node: Node,
    /// The branch key that points here: the page's first key must equal it.
    first: Option<Vec<u8>>,
    /// The next branch key (of the parent or an ancestor): every key must
    /// be below it.
    upper: Option<Vec<u8>>,
    /// Levels from the bucket's root (the root is 1).
    depth: usize,
    /// The page that references this one.
    from: u64,
}

enum Node {
    Disk(u64),
    Inline(Vec<u8>),
}

struct Checker<'a, R> {
    db: &'a Db<R>,
    hwm: u64,
    reachable: Bits,
    free: Bits,
    report: CheckReport,
    work: Vec<Work>,
}

impl<R: ReadAt> Db<R> {
    /// Checks the database's consistency, like bbolt's `tx.Check`: every
    /// page reachable from the root bucket and the freelist lies below the
    /// high-water mark and is reached once, carries its id in its header
    /// and has a sound type and element array; keys ascend in every page
    /// and stay below the next branch key of their parent; each branch key
    /// equals the first key of its child; reachable and free pages together
    /// cover every page below the high-water mark, and none is both.
    ///
    /// Returns the report when the database passed, and
    /// [`Error::Inconsistent`] with the report (its problems name the page
    /// and what is wrong) when it did not. Errors of the source itself are
    /// returned as they are. Memory: two bits per page plus one path of
    /// pages and the branch keys along it.
    pub fn check(&self) -> Result<CheckReport, Error> {
        let report = self.check_report()?;
        if report.is_ok() {
            Ok(report)
        } else {
            Err(Error::Inconsistent(Box::new(report)))
        }
    }

    /// Like [`Db::check`], but returns the report whether or not it lists
    /// problems.
    pub fn check_report(&self) -> Result<CheckReport, Error> {
        let meta = self.meta();
        let hwm = meta.high_water_mark;
        let mut c = Checker {
            db: self,
            hwm,
            reachable: Bits::new(hwm),
            free: Bits::new(hwm),
            report: CheckReport {
                page_size: meta.page_size,
                high_water_mark: hwm,
                txid: meta.txid,
                freelist_persisted: meta.freelist.is_some(),
                ..CheckReport::default()
            },
            work: Vec::new(),
        };
        c.reachable.set(0);
        c.reachable.set(1);
        if let Some(freelist) = meta.freelist {
            c.freelist(freelist)?;
        }
        c.work.push(Work {
            node: Node::Disk(meta.root),
            first: None,
            upper: None,
            depth: 1,
            from: meta.page,
        });
        while let Some(w) = c.work.pop() {
            c.node(w)?;
        }
        c.finish();
        Ok(c.report)
    }
}

impl<R: ReadAt> Checker<'_, R> {
    /// Marks pages `id..=id+overflow` reachable.
    fn mark_reachable(&mut self, id: u64, overflow: u32) {
        for p in id..=id.saturating_add(u64::from(overflow)) {
            if p >= self.hwm {
                break;
            }
            if self.reachable.set(p) {
                self.report
                    .problem(Loc::Disk(p), "multiple references (reached twice)");
            } else if self.free.get(p) {
                self.report
                    .problem(Loc::Disk(p), "reachable freed (in use and on the freelist)");
            }
        }
    }

    fn freelist(&mut self, id: u64) -> Result<(), Error> {
        if id < 2 || id >= self.hwm {
            self.report.problem(
                Loc::Disk(id),
                format!(
                    "the freelist page lies outside 2..{} (high-water mark)",
                    self.hwm
                ),
            );
            return Ok(());
        }
        let (page, ids) = match self.db.read_freelist(id) {
            Ok(x) => x,
            Err(e) => {
                self.reachable.set(id);
                return self.report.error(e);
            }
        };
        self.mark_reachable(id, page.overflow);
        for free in ids {
            if free < 2 || free >= self.hwm {
                self.report.problem(
                    Loc::Disk(id),
                    format!(
                        "the freelist lists page {free}, outside 2..{} (high-water mark)",
                        self.hwm
                    ),
                );
            } else if self.free.set(free) {
                self.report
                    .problem(Loc::Disk(free), "listed twice on the freelist");
            } else if self.reachable.get(free) {
                self.report.problem(
                    Loc::Disk(free),
                    "reachable freed (in use and on the freelist)",
                );
            }
        }
        Ok(())
    }

    fn node(&mut self, w: Work) -> Result<(), Error> {
        let page = match &w.node {
            Node::Disk(id) => {
                let id = *id;
                if id < 2 || id >= self.hwm {
                    self.report.problem(
                        Loc::Disk(id),
                        format!(
                            "out of bounds: referenced from page {}, outside 2..{} \
                             (high-water mark)",
                            w.from, self.hwm
                        ),
                    );
                    return Ok(());
                }
                if self.reachable.get(id) {
                    self.report.problem(
                        Loc::Disk(id),
                        format!("multiple references (again from page {})", w.from),
                    );
                    return Ok(());
                }
                match self.db.read_page(id) {
                    Ok(page) => {
                        self.mark_reachable(id, page.overflow);
                        page
                    }
                    Err(e) => {
                        self.reachable.set(id);
                        return self.report.error(e);
                    }
                }
            }
            Node::Inline(bytes) => match Page::parse(Loc::Inline(w.from), bytes.clone()) {
                Ok(page) => page,
                Err(e) => return self.report.error(e),
            },
        };
        self.report.max_depth = self.report.max_depth.max(w.depth);
        if let Err(e) = page.check_node() {
            return self.report.error(e);
        }
        if matches!(w.node, Node::Inline(_)) && !page.is_leaf() {
            self.report
                .problem(page.loc, "an inline bucket's page is not a leaf");
            return Ok(());
        }
        if page.count == 0 && w.first.is_some() {
            self.report.problem(
                page.loc,
                format!(
                    "empty page below a bucket's root (referenced from page {})",
                    w.from
                ),
            );
            return Ok(());
        }
        self.elements(&page, &w)
    }

    /// Checks the keys of `page` and queues its children and buckets.
    fn elements(&mut self, page: &Page, w: &Work) -> Result<(), Error> {
        let mut prev: Option<&[u8]> = None;
        // One problem of each kind per page is enough to name it.
        let (mut disordered, mut above) = (false, false);
        let mut children: Vec<(Vec<u8>, u64)> = Vec::new();
        for i in 0..page.count {
            let key = match page.key(i) {
                Ok(k) => k,
                Err(e) => return self.report.error(e),
            };
            if let Some(p) = prev
                && key <= p
                && !std::mem::replace(&mut disordered, true)
            {
                self.report.problem(
                    page.loc,
                    format!(
                        "keys out of order: element {i} key {} is not greater than element \
                         {} key {}",
                        hex(key),
                        i - 1,
                        hex(p)
                    ),
                );
            }
            if i == 0
                && let Some(first) = &w.first
                && key != first.as_slice()
            {
                self.report.problem(
                    page.loc,
                    format!(
                        "first key {} differs from the key {} that page {} has for it",
                        hex(key),
                        hex(first),
                        w.from
                    ),
                );
            }
            if let Some(upper) = &w.upper
                && key >= upper.as_slice()
                && !std::mem::replace(&mut above, true)
            {
                self.report.problem(
                    page.loc,
                    format!(
                        "element {i} key {} is not below {}, the next key in page {} \
                         (or an ancestor)",
                        hex(key),
                        hex(upper),
                        w.from
                    ),
                );
            }
            prev = Some(key);
            if page.is_branch() {
                match page.branch(i) {
                    Ok(b) => children.push((b.key.to_vec(), b.child)),
                    Err(e) => return self.report.error(e),
                }
                continue;
            }
            let e = match page.leaf(i) {
                Ok(e) => e,
                Err(e) => return self.report.error(e),
            };
            if !e.is_bucket() {
                self.report.keys += 1;
                continue;
            }
            self.report.buckets += 1;
            let v = match parse_bucket_value(page.loc, e.key, e.value) {
                Ok(v) => v,
                Err(e) => return self.report.error(e),
            };
            let holder = page.loc.id();
            match v.inline {
                None => self.work.push(Work {
                    node: Node::Disk(v.root),
                    first: None,
                    upper: None,
                    depth: 1,
                    from: holder,
                }),
                Some(_) if matches!(page.loc, Loc::Inline(_)) => {
                    // bbolt never inlines a bucket that has sub-buckets;
                    // following them could nest without bound.
                    self.report.problem(
                        page.loc,
                        format!("element {i}: an inline bucket holds an inline bucket"),
                    );
                }
                Some(bytes) => {
                    self.report.inline_buckets += 1;
                    self.work.push(Work {
                        node: Node::Inline(bytes.to_vec()),
                        first: None,
                        upper: None,
                        depth: 1,
                        from: holder,
                    });
                }
            }
        }
        if !children.is_empty() && w.depth >= MAX_DEPTH {
            self.report.problem(
                page.loc,
                format!("tree deeper than {MAX_DEPTH} levels; its children are not checked"),
            );
            return Ok(());
        }
        // Queue the children last-first, so they are checked in order.
        let mut upper = w.upper.clone();
        while let Some((key, child)) = children.pop() {
            self.work.push(Work {
                node: Node::Disk(child),
                first: Some(key.clone()),
                upper: upper.clone(),
                depth: w.depth + 1,
                from: page.loc.id(),
            });
            upper = Some(key);
        }
        Ok(())
    }

    fn finish(&mut self) {
        let mut reachable = 0;
        let mut free = 0;
        let mut unreachable = 0;
        let persisted = self.report.freelist_persisted;
        for p in 0..self.hwm {
            let r = self.reachable.get(p);
            if r {
                reachable += 1;
            }
            if persisted {
                if self.free.get(p) {
                    free += 1;
                } else if !r {
                    unreachable += 1;
                    self.report.problem(
                        Loc::Disk(p),
                        "unreachable unfreed (neither in use nor on the freelist)",
                    );
                }
            } else if !r {
                free += 1;
            }
        }
        self.report.reachable_pages = reachable;
        self.report.free_pages = free;
        self.report.unreachable_pages = unreachable;
    }
}
