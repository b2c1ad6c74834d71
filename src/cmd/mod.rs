pub mod ceg;
pub mod fit;
pub mod train;
