//! libtorch links and runs from the rpath that build.rs embeds (no LD_LIBRARY_PATH).

#[test]
fn libtorch_computes_a_matrix_product_on_the_cpu() {
    let a = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
    let product: Vec<f32> = Vec::try_from(a.matmul(&a).flatten(0, 1)).unwrap();
    assert_eq!(product, vec![7.0, 10.0, 15.0, 22.0]);
}
