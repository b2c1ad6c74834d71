pub mod ceg;
pub mod data;
pub mod fit;
pub mod train;
