// The microphone's samples, posted to the page in blocks from the audio thread (an AudioWorklet: the
// deprecated ScriptProcessorNode would run on the page's main thread). Channels are averaged to mono.
class Recorder extends AudioWorkletProcessor {
  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length > 0) {
      const length = channels[0].length;
      const mono = new Float32Array(length);
      for (const channel of channels) {
        for (let i = 0; i < length; i++) {
          mono[i] += channel[i] / channels.length;
        }
      }
      this.port.postMessage(mono, [mono.buffer]);
    }
    return true;
  }
}

registerProcessor("s2v-recorder", Recorder);
