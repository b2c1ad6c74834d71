pub mod ceg;
pub mod data;
pub mod fit;
pub mod reproduce;
pub mod run;
pub mod sample;
pub mod sweep;
pub mod train;
