//! Conversions between [`Tensor`] and `ndarray` arrays (feature `ndarray`).

use ndarray::{ArrayBase, ArrayD, ArrayViewD, Data, Dimension, IxDyn};

use crate::{Element, Tensor, TensorError};

impl Tensor {
    /// A tensor holding a copy of `array`'s elements, row-major (in one
    /// copy when the array is in standard layout).
    pub fn from_ndarray<T, S, D>(array: &ArrayBase<S, D>) -> Result<Self, TensorError>
    where
        T: Element,
        S: Data<Elem = T>,
        D: Dimension,
    {
        match array.as_slice() {
            Some(slice) => Self::from_slice(array.shape(), slice),
            None => {
                let elements: Vec<T> = array.iter().copied().collect();
                Self::from_slice(array.shape(), &elements)
            }
        }
    }

    /// The tensor as an `ndarray` view, in place.
    pub fn view<T: Element>(&self) -> Result<ArrayViewD<'_, T>, TensorError> {
        ArrayViewD::from_shape(IxDyn(self.shape()), self.as_slice::<T>()?)
            .map_err(|e| TensorError::Stack(format!("ndarray refused the shape: {e}")))
    }

    /// The tensor as an owned `ndarray` array (a copy).
    pub fn to_ndarray<T: Element>(&self) -> Result<ArrayD<T>, TensorError> {
        self.view().map(|v| v.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, ShapeBuilder};

    use super::*;

    #[test]
    fn round_trips_standard_and_transposed_layouts() {
        let a = Array2::from_shape_fn((3, 4), |(i, j)| (i * 10 + j) as f32);
        let t = Tensor::from_ndarray(&a).unwrap();
        assert_eq!(t.shape(), &[3, 4]);
        assert_eq!(t.view::<f32>().unwrap(), a.view().into_dyn());
        let f = Array2::from_shape_fn((3, 4).f(), |(i, j)| (i * 10 + j) as i64);
        let t = Tensor::from_ndarray(&f.t()).unwrap();
        assert_eq!(t.shape(), &[4, 3]);
        assert_eq!(t.to_ndarray::<i64>().unwrap(), f.t().to_owned().into_dyn());
        assert!(t.view::<f32>().is_err());
    }
}
