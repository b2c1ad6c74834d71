pub mod ceg;
pub mod data;
pub mod fit;
pub mod report;
pub mod reproduce;
pub mod run;
pub mod sweep;
pub mod train;
