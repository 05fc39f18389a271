//! Image-folder decoding (PNG / JPEG, format guessed from the bytes as the reader does).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = kaizen_data::image_folder::decode_image(data, Path::new("fuzz.png")) {
        // What the reader does next with every decoded image.
        let (w, h) = (img.width() as usize, img.height() as usize);
        assert_eq!(img.to_luma8().as_raw().len(), w * h);
        assert_eq!(img.to_rgb8().as_raw().len(), 3 * w * h);
    }
});
