//! [`Stack`] and [`Unstack`]: how arguments of many callers become one
//! batch, and how a batched result is split back.
//!
//! Tensors concatenate along dimension 0; each caller may send several rows
//! and gets back as many. Tuples (up to 4), `Vec`s of one length and `()`
//! stack element by element. [`PerCaller`] values are not stacked: the
//! handler gets every caller's own value, in caller order.

use serde::{Deserialize, Serialize};

use crate::tensor::aligned_concat;
use crate::{Tensor, TensorError};

/// A value that many callers' values can be stacked into.
pub trait Stack: Sized + Send + 'static {
    /// The batched form the handler gets.
    type Stacked: Send + 'static;

    /// The number of rows this value adds along dimension 0: `Some(n)` if
    /// it holds tensors (which must all have `n` rows), `None` if it holds
    /// none.
    fn rows(&self) -> Result<Option<usize>, TensorError>;

    /// Checks that this value has the structure of `first` (same dtypes,
    /// same trailing dimensions, same lengths), so that the two stack.
    fn check_like(&self, first: &Self) -> Result<(), TensorError>;

    /// Stacks values that passed [`check_like`](Self::check_like) against
    /// the first of them.
    fn stack(items: Vec<Self>) -> Result<Self::Stacked, TensorError>;
}

/// A batched result that splits back into one part per caller.
pub trait Unstack: Sized + Send + 'static {
    /// What each caller gets.
    type Part: Send + 'static;

    /// Splits into one part per caller, caller `i` getting `rows[i]` rows
    /// of each tensor.
    fn unstack(self, rows: &[usize]) -> Result<Vec<Self::Part>, TensorError>;
}

/// A value that is not stacked: the handler gets each caller's own value
/// (a `Vec`, in caller order), and a handler's `PerCaller<Vec<T>>` result
/// gives each caller its own `T`.
///
/// On the wire it is just `T`: callers send and receive plain `T`s.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PerCaller<T>(pub T);

fn stack_error(msg: impl Into<String>) -> TensorError {
    TensorError::Stack(msg.into())
}

/// The row count of two parts of one value, which must agree.
fn merge_rows(a: Option<usize>, b: Option<usize>) -> Result<Option<usize>, TensorError> {
    match (a, b) {
        (Some(x), Some(y)) if x != y => Err(stack_error(format!(
            "tensors of one caller have {x} and {y} rows"
        ))),
        (x, y) => Ok(x.or(y)),
    }
}

impl Stack for Tensor {
    type Stacked = Self;

    fn rows(&self) -> Result<Option<usize>, TensorError> {
        match self.shape().first() {
            Some(&n) => Ok(Some(n)),
            None => Err(stack_error("a rank-0 tensor has no dimension 0")),
        }
    }

    fn check_like(&self, first: &Self) -> Result<(), TensorError> {
        if self.dtype() != first.dtype() || self.shape().get(1..) != first.shape().get(1..) {
            return Err(stack_error(format!(
                "a {} tensor of shape {:?} does not stack onto {} of shape {:?}",
                self.dtype(),
                self.shape(),
                first.dtype(),
                first.shape()
            )));
        }
        Ok(())
    }

    fn stack(items: Vec<Self>) -> Result<Self, TensorError> {
        let mut iter = items.into_iter();
        let Some(first) = iter.next() else {
            return Err(stack_error("nothing to stack"));
        };
        let rest: Vec<Self> = iter.collect();
        if rest.is_empty() {
            // A batch of one is the caller's tensor itself: no copy.
            return Ok(first);
        }
        let mut shape = first.shape().to_vec();
        let mut rows = first.rows()?.unwrap_or(0);
        for t in &rest {
            t.check_like(&first)?;
            let more = t.rows()?.unwrap_or(0);
            rows = rows
                .checked_add(more)
                .ok_or_else(|| stack_error("the stacked row count overflows"))?;
        }
        shape[0] = rows;
        let parts: Vec<&[u8]> = std::iter::once(&first)
            .chain(&rest)
            .map(|t| &t.data()[..])
            .collect();
        // The sum of lengths already in memory cannot overflow.
        let data = aligned_concat(&parts);
        Ok(Self::from_checked(first.dtype(), shape, data))
    }
}

impl Unstack for Tensor {
    type Part = Self;

    fn unstack(self, rows: &[usize]) -> Result<Vec<Self>, TensorError> {
        let total = rows.iter().try_fold(0usize, |a, &r| a.checked_add(r));
        let Some(&n) = self.shape().first() else {
            return Err(stack_error("the handler returned a rank-0 tensor"));
        };
        if total != Some(n) {
            return Err(stack_error(format!(
                "the handler returned {n} rows for callers that sent {rows:?}"
            )));
        }
        let row = self.row_bytes();
        let mut at = 0;
        Ok(rows
            .iter()
            .map(|&r| {
                // Within the data: the rows add up to dimension 0.
                let mut shape = self.shape().to_vec();
                shape[0] = r;
                let part = self.data().slice(at..at + r * row);
                at += r * row;
                Self::from_checked(self.dtype(), shape, part)
            })
            .collect())
    }
}

impl<T: Send + 'static> Stack for PerCaller<T> {
    type Stacked = Vec<T>;

    fn rows(&self) -> Result<Option<usize>, TensorError> {
        Ok(None)
    }

    fn check_like(&self, _first: &Self) -> Result<(), TensorError> {
        Ok(())
    }

    fn stack(items: Vec<Self>) -> Result<Vec<T>, TensorError> {
        Ok(items.into_iter().map(|p| p.0).collect())
    }
}

impl<T: Send + 'static> Unstack for PerCaller<Vec<T>> {
    type Part = PerCaller<T>;

    fn unstack(self, rows: &[usize]) -> Result<Vec<PerCaller<T>>, TensorError> {
        if self.0.len() != rows.len() {
            return Err(stack_error(format!(
                "the handler returned {} per-caller values for {} callers",
                self.0.len(),
                rows.len()
            )));
        }
        Ok(self.0.into_iter().map(PerCaller).collect())
    }
}

impl Stack for () {
    type Stacked = ();

    fn rows(&self) -> Result<Option<usize>, TensorError> {
        Ok(None)
    }

    fn check_like(&self, _first: &Self) -> Result<(), TensorError> {
        Ok(())
    }

    fn stack(_items: Vec<Self>) -> Result<(), TensorError> {
        Ok(())
    }
}

impl Unstack for () {
    type Part = ();

    fn unstack(self, rows: &[usize]) -> Result<Vec<()>, TensorError> {
        Ok(vec![(); rows.len()])
    }
}

impl<T: Stack> Stack for Vec<T> {
    type Stacked = Vec<T::Stacked>;

    fn rows(&self) -> Result<Option<usize>, TensorError> {
        self.iter()
            .try_fold(None, |acc, x| merge_rows(acc, x.rows()?))
    }

    fn check_like(&self, first: &Self) -> Result<(), TensorError> {
        if self.len() != first.len() {
            return Err(stack_error(format!(
                "a vector of {} does not stack onto one of {}",
                self.len(),
                first.len()
            )));
        }
        self.iter()
            .zip(first)
            .try_for_each(|(a, b)| a.check_like(b))
    }

    fn stack(items: Vec<Self>) -> Result<Self::Stacked, TensorError> {
        transpose(items)?.into_iter().map(T::stack).collect()
    }
}

impl<T: Unstack> Unstack for Vec<T> {
    type Part = Vec<T::Part>;

    fn unstack(self, rows: &[usize]) -> Result<Vec<Self::Part>, TensorError> {
        let per_element = self
            .into_iter()
            .map(|x| x.unstack(rows))
            .collect::<Result<Vec<_>, _>>()?;
        if per_element.is_empty() {
            return Ok(rows.iter().map(|_| Vec::new()).collect());
        }
        transpose(per_element)
    }
}

/// Rows of equal length to columns.
fn transpose<X>(rows: Vec<Vec<X>>) -> Result<Vec<Vec<X>>, TensorError> {
    let width = rows.first().map_or(0, Vec::len);
    let height = rows.len();
    let mut iters: Vec<_> = rows.into_iter().map(Vec::into_iter).collect();
    (0..width)
        .map(|_| {
            let col: Option<Vec<X>> = iters.iter_mut().map(Iterator::next).collect();
            col.filter(|c| c.len() == height)
                .ok_or_else(|| stack_error("vectors of different lengths"))
        })
        .collect()
}

macro_rules! tuples {
    ($(($($t:ident $i:tt),+))*) => {$(
        impl<$($t: Stack),+> Stack for ($($t,)+) {
            type Stacked = ($($t::Stacked,)+);

            fn rows(&self) -> Result<Option<usize>, TensorError> {
                let rows = None;
                $(let rows = merge_rows(rows, self.$i.rows()?)?;)+
                Ok(rows)
            }

            fn check_like(&self, first: &Self) -> Result<(), TensorError> {
                $(self.$i.check_like(&first.$i)?;)+
                Ok(())
            }

            #[allow(non_snake_case)]
            fn stack(items: Vec<Self>) -> Result<Self::Stacked, TensorError> {
                $(let mut $t = Vec::with_capacity(items.len());)+
                for item in items {
                    $($t.push(item.$i);)+
                }
                Ok(($($t::stack($t)?,)+))
            }
        }

        impl<$($t: Unstack),+> Unstack for ($($t,)+) {
            type Part = ($($t::Part,)+);

            #[allow(non_snake_case)]
            fn unstack(self, rows: &[usize]) -> Result<Vec<Self::Part>, TensorError> {
                $(let mut $t = self.$i.unstack(rows)?.into_iter();)+
                let mut out = Vec::with_capacity(rows.len());
                for _ in rows {
                    match ($($t.next(),)+) {
                        ($(Some($t),)+) => out.push(($($t,)+)),
                        _ => return Err(stack_error("parts of different lengths")),
                    }
                }
                Ok(out)
            }
        }
    )*};
}

tuples! {
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    fn t(shape: &[usize], start: i32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<i32> = (start..start + n as i32).collect();
        Tensor::from_slice(shape, &v).unwrap()
    }

    #[test]
    fn tensors_stack_along_dim_0_and_split_by_rows() {
        let items = vec![t(&[1, 2], 0), t(&[3, 2], 2), t(&[0, 2], 99), t(&[2, 2], 8)];
        let rows: Vec<usize> = items.iter().map(|x| x.rows().unwrap().unwrap()).collect();
        assert_eq!(rows, [1, 3, 0, 2]);
        for x in &items {
            x.check_like(&items[0]).unwrap();
        }
        let stacked = Tensor::stack(items.clone()).unwrap();
        assert_eq!(stacked.shape(), &[6, 2]);
        assert_eq!(
            stacked.to_vec::<i32>().unwrap(),
            (0..12).collect::<Vec<_>>()
        );
        assert!(stacked.is_aligned());
        let back = stacked.clone().unstack(&rows).unwrap();
        assert_eq!(back, items);
        // Splitting shares the batch's buffer.
        assert_eq!(back[1].data().as_ptr(), stacked.data()[8..].as_ptr());
        assert!(stacked.unstack(&[1, 1]).is_err());
    }

    #[test]
    fn a_batch_of_one_is_not_copied() {
        let x = t(&[2, 3], 0);
        let s = Tensor::stack(vec![x.clone()]).unwrap();
        assert_eq!(s.data().as_ptr(), x.data().as_ptr());
    }

    #[test]
    fn mismatches_are_errors() {
        let f = Tensor::zeros(DType::F32, &[1, 2]).unwrap();
        assert!(t(&[1, 3], 0).check_like(&t(&[1, 2], 0)).is_err());
        assert!(f.check_like(&t(&[1, 2], 0)).is_err());
        assert!(Tensor::scalar(1i32).rows().is_err());
        assert!(
            vec![t(&[1], 0)]
                .check_like(&vec![t(&[1], 0), t(&[1], 0)])
                .is_err()
        );
        // One caller's tensors must agree on their rows.
        assert!((t(&[1, 2], 0), t(&[2], 0)).rows().is_err());
        assert_eq!((t(&[2, 2], 0), PerCaller(1)).rows(), Ok(Some(2)));
        assert_eq!(PerCaller("x").rows(), Ok(None));
    }

    #[test]
    fn structures_stack_element_by_element() {
        type Args = (Tensor, PerCaller<String>, Vec<Tensor>);
        let a: Args = (t(&[1, 2], 0), PerCaller("a".into()), vec![t(&[1], 10)]);
        let b: Args = (t(&[2, 2], 2), PerCaller("b".into()), vec![t(&[2], 11)]);
        b.check_like(&a).unwrap();
        let (x, names, v) = Args::stack(vec![a, b]).unwrap();
        assert_eq!(x.shape(), &[3, 2]);
        assert_eq!(names, ["a", "b"]);
        assert_eq!(v[0].to_vec::<i32>().unwrap(), [10, 11, 12]);

        let result = (x, PerCaller(vec![1u8, 2]), vec![v[0].clone()], ());
        let parts = result.unstack(&[1, 2]).unwrap();
        assert_eq!(parts[0].0.shape(), &[1, 2]);
        assert_eq!(parts[1].1, PerCaller(2));
        assert_eq!(parts[1].2[0].to_vec::<i32>().unwrap(), [11, 12]);
        assert!(PerCaller(vec![1]).unstack(&[1, 1]).is_err());
    }
}
