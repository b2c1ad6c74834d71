//! Trains `Transformer<Rotary, Mlp<SquaredRelu>, RmsNorm>` briefly and prints the losses.

fn main() -> candle_core::Result<()> {
    let losses = algoprog_example_custom_component::train(40, 0)?;
    for (i, l) in losses[..losses.len() - 1].iter().enumerate().step_by(5) {
        println!("step {i:>3}  loss {l:.4}");
    }
    println!("final     loss {:.4}", losses.last().unwrap());
    Ok(())
}
