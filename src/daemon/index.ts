/**
 * daemon — the composition root: images served through FUSE transports, their lifecycle and
 * their shared metrics. May import: everything below it.
 */
export { ImageService, type ImageServiceOptions } from './image-service.js';
