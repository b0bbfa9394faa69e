"""What training and evaluation both measure: image quality (PSNR, MS-SSIM) and where the bits go."""
